"""seextract throughput on a large generated capture.

Run: .venv/bin/python bench/bench_seextract.py [--mb 64] [--keep FILE]

The capture imitates a router's ``tcpdump tcp`` on a home LAN: one inverter connection to the
server on port 22222 (0x0500 telemetry of 300..1400 bytes split into segments, the server's ACK
frames back, TCP ACKs, 2 % of segments retransmitted and 2 % reordered) among unrelated traffic
(40 % of packets, full-size HTTPS segments). Figures: capture MB/s and packets/s through
``iter_streams`` (the code path of ``seextract`` and ``semonitor --pcap``), and, for scale, a plain
read of the same file with dpkt's pcap reader and Ethernet/IP/TCP decoder. Times are CPU time
(the machine is shared; CPU time is what contention disturbs least).
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

from solarbridge.sources.solaredge import extract as ex
from solarbridge.sources.solaredge.framing import Frame, StreamDecoder, encode

INV, SRV, LAN, WEB = (bytes([192, 168, 1, 50]), bytes([217, 68, 152, 66]), bytes([192, 168, 1, 20]),
                      bytes([93, 184, 216, 34]))
_ETH = bytes(12) + b"\x08\x00"
_REC = struct.Struct("<IIII")


def _packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, src, dst)
    return _ETH + ip + tcp + data


def generate(path: Path, megabytes: float, seed: int = 1) -> tuple[int, int, int]:
    """Write the capture; returns (packets, to-server bytes, frames)."""
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    size = 24
    packets = frames = 0
    c_seq, s_seq = 1000, 900000
    w_seq = 5
    to_server = 0
    pending: list[bytes] = []  # reordering window
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        ts = 1_700_000_000

        def put(pkt: bytes) -> None:
            nonlocal size, packets, ts
            ts += 1
            f.write(_REC.pack(ts, 0, len(pkt), len(pkt)))
            f.write(pkt)
            size += 16 + len(pkt)
            packets += 1

        put(_packet(INV, SRV, 40000, 22222, c_seq - 1, 0, 0x02, b""))
        put(_packet(SRV, INV, 22222, 40000, s_seq - 1, c_seq, 0x12, b""))
        i = 0
        while size < target:
            frame = encode(Frame(i & 0xFFFF, 0x7F104920, 0xFFFFFFFE, 0x0500, rng.randbytes(rng.randint(300, 1400))))
            frames += 1
            to_server += len(frame)
            pos = 0
            while pos < len(frame):
                n = min(len(frame) - pos, rng.choice((536, 1460, 1460, 200)))
                seg = _packet(INV, SRV, 40000, 22222, c_seq, s_seq, 0x18, frame[pos:pos + n])
                c_seq += n
                pos += n
                r = rng.random()
                if r < 0.02:
                    put(seg)
                    put(seg)  # retransmission
                elif r < 0.04:
                    pending.append(seg)  # goes out after the next segment
                    continue
                else:
                    put(seg)
                for p in pending:
                    put(p)
                pending.clear()
            for p in pending:
                put(p)
            pending.clear()
            reply = encode(Frame(i & 0xFFFF, 0xFFFFFFFE, 0x7F104920, 0x0080))
            put(_packet(SRV, INV, 22222, 40000, s_seq, c_seq, 0x18, reply))
            s_seq += len(reply)
            for _ in range(rng.randint(2, 6)):  # unrelated downloads on the LAN
                put(_packet(WEB, LAN, 443, 51000, w_seq, 1, 0x10, rng.randbytes(1460)))
                w_seq += 1460
            i += 1
    return packets, to_server, frames


def bench_extract(path: Path, repeat: int = 3) -> tuple[float, dict[str, int], bytes]:
    best = float("inf")
    stats: dict[str, int] = {}
    out = b""
    for _ in range(repeat):
        e = ex.make_extractor("217.68.152.66", direction="to-server")
        t0 = time.process_time()  # CPU time: the machine is shared, and contention disturbs it least
        out = b"".join(ex.iter_streams(path, extractor=e))
        best = min(best, time.process_time() - t0)
        stats = dict(e.stats)
    return best, stats, out


def bench_dpkt(path: Path) -> float:
    import dpkt

    t0 = time.process_time()
    n = 0
    with path.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.tcp.TCP):
                n += len(eth.data.data.data)
    return time.process_time() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=64.0, help="capture size in MiB (default 64)")
    p.add_argument("--keep", type=Path, help="write the capture here and keep it")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = a.keep or Path(d) / "bench.pcap"
        t0 = time.perf_counter()
        packets, to_server, frames = generate(path, a.mb)
        mb = os.path.getsize(path) / 1e6
        print(f"generated {mb:.1f} MB, {packets} packets, {frames} frames in {time.perf_counter() - t0:.1f} s")
        secs, stats, out = bench_extract(path)
        assert len(out) == to_server, (len(out), to_server)
        dec = StreamDecoder()
        assert len(dec.feed(out)) == frames and not dec.drops
        print(f"seextract (iter_streams, to-server): {mb / secs:.1f} MB/s, {packets / secs / 1000:.0f} k packets/s, "
              f"{frames / secs / 1000:.1f} k frames/s ({secs:.2f} s CPU; best of 3)")
        print("  stats: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
        dsecs = bench_dpkt(path)
        print(f"for scale, dpkt pcap reader + Ethernet/IP/TCP decode only: {mb / dsecs:.1f} MB/s ({dsecs:.2f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
