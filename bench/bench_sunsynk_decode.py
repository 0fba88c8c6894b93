"""Benchmark: sunsynk capture-file decoding throughput (MB/s of capture, reports/s) and memory.

Builds a large synthetic capture: dongle sessions (reports split, retransmitted, with noise) interleaved with
unrelated traffic (bulk TCP segments of other flows, ACKs, UDP), then runs the capture source over it in file
mode with the filter ``tcp port 51100`` (as a user would), and prints MB/s, reports/s and the peak RSS growth.

    .venv/bin/python bench/bench_sunsynk_decode.py [--mb 200] [--reports-only]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import struct
import tempfile
import time
from pathlib import Path

from solarbridge.plugin import Context
from solarbridge.sources.sunsynk.simulator import DongleState, session_frames, tcp_frame
from solarbridge.sources.sunsynk.source import SunsynkCaptureConfig, SunsynkCaptureSource


def _udp_frame(size: int) -> bytes:
    payload = bytes(size)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + size, 0, 0, 64, 17, 0, socket.inet_aton("10.0.0.2"),
                     socket.inet_aton("10.0.0.3"))
    udp = struct.pack("!HHHH", 5353, 5353, 8 + size, 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp + payload


def build(path: Path, target_mb: float, reports_only: bool) -> tuple[int, int]:
    """Write the capture; returns (frames, reports)."""
    bulk = tcp_frame(("10.0.0.5", 443), ("10.0.0.9", 50000), 1, 1, 0x10, bytes(1448))
    ack = tcp_frame(("10.0.0.9", 50000), ("10.0.0.5", 443), 1, 1, 0x10, b"")
    udp = _udp_frame(200)
    rec = struct.Struct("<IIII")
    frames = reports = 0
    target = int(target_mb * 1e6)
    state = DongleState(seed=3)
    # one block of dongle traffic, re-used with fresh TCP sessions (ports) to keep building fast
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1.7e9
        session = 0
        while f.tell() < target:
            session += 1
            block = list(session_frames(state, reports=20, split=2, retransmit=0.1, noise=True, start=t,
                                        interval=1.0, seed=session, dongle=("192.168.0.202", 40000 + session % 20000)))
            reports += 20
            for ts, frame in block:
                f.write(rec.pack(int(ts), int((ts % 1) * 1e6), len(frame), len(frame)))
                f.write(frame)
                frames += 1
                if not reports_only:
                    for _ in range(8):  # ~8 unrelated frames per dongle frame, mostly bulk
                        for other in (bulk, bulk, ack, udp):
                            f.write(rec.pack(int(ts), 0, len(other), len(other)))
                            f.write(other)
                            frames += 1
            t = block[-1][0] + 1
    return frames, reports


def run(path: Path, flt: str | None = "tcp port 51100") -> tuple[float, int, int]:
    cfg = SunsynkCaptureConfig(type="sunsynk_capture", device=str(path), file=True, filter=flt)
    src = SunsynkCaptureSource(cfg, Context.standalone("bench", "source", "sunsynk_capture"))
    n = 0

    def emit(_r: object) -> None:
        nonlocal n
        n += 1

    t0 = time.process_time()  # CPU time: the machine is shared, and contention disturbs it least
    asyncio.run(src.run(emit))
    return time.process_time() - t0, n, src.pipeline.frames if src.pipeline else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200.0, help="capture size in MB (default 200)")
    ap.add_argument("--reports-only", action="store_true", help="only dongle traffic (worst case per byte)")
    ap.add_argument("--filter", default="tcp port 51100", help="BPF filter ('' for none: every TCP packet decoded)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.pcap"
        t0 = time.perf_counter()
        frames, reports = build(path, args.mb, args.reports_only)
        size = path.stat().st_size
        print(f"built {size / 1e6:.1f} MB, {frames} frames, {reports} reports in {time.perf_counter() - t0:.1f} s")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        secs, got, seen = run(path, args.filter or None)
        print(f"filter: {args.filter or '(none)'}")
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"decoded {got} reports of {reports} from {seen} frames in {secs:.2f} s CPU")
        print(f"throughput: {size / 1e6 / secs:.1f} MB/s, {seen / secs:,.0f} frames/s, {got / secs:,.0f} reports/s")
        print(f"peak RSS: {rss0 / 1024:.1f} MB before decoding, {rss1 / 1024:.1f} MB after "
              f"(growth {(rss1 - rss0) / 1024:.1f} MB for a {size / 1e6:.0f} MB file)")
        if got != reports:
            raise SystemExit(f"MISMATCH: {got} != {reports}")


if __name__ == "__main__":
    main()
