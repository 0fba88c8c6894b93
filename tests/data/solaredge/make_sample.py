"""Builds sample.rec: a deterministic SolarEdge byte stream covering every record layout.

Run: python tests/data/solaredge/make_sample.py  (writes sample.rec next to this file).
Contents: real records from records.txt (jbuehl/solaredge issues #4, #8, #11, #178) and frames.txt,
plus simulator-built records of every layout (0x0010, 0x0011, 0x0000, 0x0080, 0x0082, 0x0300 both
event types, 0x0030, 0x0022 all rec types, unknown 0x0017/0x0800, NaN values, an id with bit 23
set), with junk between frames, a corrupted CRC, an all-zero block, a truncated frame and
non-telemetry messages (GMT, ACK, param responses, version, grant/ack).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from solarbridge.sources.solaredge import simulator as sim
from solarbridge.sources.solaredge.framing import Frame, encode

HERE = Path(__file__).parent
INV = 0x7F104920
SRV = 0xFFFFFFFE


def records_txt() -> dict[str, bytes]:
    out = {}
    for line in (HERE / "records.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, h = line.split()
            out[name] = bytes.fromhex(h)
    return out


def frames_txt() -> dict[str, bytes]:
    out = {}
    for line in (HERE / "frames.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, h = line.split()
            out[name] = bytes.fromhex(h)
    return out


def build() -> bytes:
    rng = random.Random(5)
    recs = records_txt()
    frames = frames_txt()
    out = bytearray()
    seq = 100

    def post(payload: bytes, src: int = INV) -> None:
        nonlocal seq
        seq += 1
        out.extend(encode(Frame(seq, src, SRV, 0x0500, payload)))

    t0 = 1511078404  # 2017-11-19 (the upstream sample's day)
    # real records, grouped as they were captured
    post(b"".join(v for k, v in recs.items() if k.startswith("i178_")))
    post(b"".join(v for k, v in recs.items() if k.startswith("i4_")))
    post(b"".join(v for k, v in recs.items() if k.startswith("i8_")), src=0x7F104A16)
    post(b"".join(v for k, v in recs.items() if k.startswith("i11_")))
    out.extend(frames["i136_0500_meter0022"])
    out.extend(b"\x00" * 7 + bytes(rng.randrange(256) for _ in range(13)))  # junk
    for i in range(6):
        ts = t0 + 300 * i
        payload = [
            sim.record(0x0010, INV, sim.inverter_0010(ts, 4000 + i, 300, 31.5 + i, 1000.0 * i, 250.0, 240.1,
                                                      4.2, 60.01, 380.5, 1.5e7 + i, -3.4028234663852886e38, 1011.0)),
            sim.record(0x0011, 0x7F904A17, sim.inverter_0011(ts, 5000, 300, 40.0, 2000.0, 300.0, (230.0, 231.0, 229.5),
                                                             (5.0, 5.1, 4.9), 50.0, 600.0, 2.0e7)),
            sim.record(0x0000, 0x1016AB88, sim.optimizer_0000(ts, 0x7F904A16, 3543, 36.625, 21.75, 0.58, 14.0, 16.0)),
            sim.record(0x0080, 0x20800001 + i, sim.optimizer_0080(ts, 1000 + i, 30.5, 40.125, 8.5, 500.25, -12.0)),
            sim.record(0x0082, 0x15E752FD, sim.optimizer_0080(ts, 14244, 30.75, 51.5, 9.11875, 0, 0) + b"\x00\x93\xf8"),
            sim.record(0x0030, INV, sim.battery_0030(ts, "BATTID00001", 401.5, -2.5, 9800.0, 9700.0, 5000.0, 123456,
                                                     120000, 25.5, 3, 300, 100, 0)),
            sim.record(0x0022, INV, sim.meter_0022(ts, 5, 0, 111, 222, 300, 5, 6, 700.5, 0.0)),
            sim.record(0x0022, INV, sim.meter_0022(ts, 3, 1, 0, 0, 300, 0, 77, float("nan"), 925.0)),
            sim.record(0x0022, INV, sim.meter_0022(ts, 7, 1, 0, 0, 300, 9, 0, 1200.0, None)),
            sim.record(0x0022, INV, sim.meter_0022(ts, 8, 1, 0, 0, 300, 0, 0, 0.0, None)),
            sim.record(0x0022, INV, sim.meter_0022(ts, 11, 1, 0, 0, 300, 0, 0, -3.4028234663852886e38, None)),
            sim.record(0x0017, INV, struct.pack("<L", ts) + bytes(range(40))),
            sim.record(0x0800, 0x7F904A16, struct.pack("<L", ts)),
            sim.record(0x0018, INV, struct.pack("<L", ts) + b"\xff" * 17),
        ]
        if i % 2:
            payload.append(sim.record(0x0300, INV, sim.event_0300(ts, 0, ts - 60, ts - 30, 0)))
        else:
            payload.append(sim.record(0x0300, INV, sim.event_0300(ts, 1, ts - 60, -28800, ts + 600)))
        post(b"".join(payload))
        if i == 1:
            bad = bytearray(encode(Frame(999, INV, SRV, 0x0500, payload[0])))
            bad[-1] ^= 0xFF
            out.extend(bad)  # CRC error
        if i == 2:
            out.extend(b"\x12\x34\x56\x79" + b"\x00" * 30)  # all-zero block
        if i == 3:
            out.extend(encode(Frame(998, INV, SRV, 0x0500, payload[1]))[:50])  # truncated by the next frame
        if i == 4:
            out.extend(bytes(rng.randrange(256) for _ in range(40)).replace(b"\x12\x34", b"\x12\x00"))
    # other functions
    for name in ("i73_0501", "i26_0302", "i26_039a_a", "pysolaredge_nodata", "pysolaredge_data"):
        out.extend(frames[name])
    out.extend(encode(Frame(7, SRV, INV, 0x0580, struct.pack("<Ll", t0, -28800))))
    out.extend(encode(Frame(7, INV, SRV, 0x0080)))
    out.extend(encode(Frame(8, SRV, INV, 0x0012, struct.pack("<H", 0x239))))
    out.extend(encode(Frame(8, INV, SRV, 0x0090, struct.pack("<LH", 0x232599E1, 0))))
    out.extend(encode(Frame(9, INV, SRV, 0x00B0, struct.pack("<HH", 3, 2468))))
    out.extend(encode(Frame(10, INV, SRV, 0x038D, struct.pack("<ffffL", 1.5, 2.5, 3.5, 4.5, t0))))
    post(b"")  # empty 0x0500: ACKed, no output line
    return bytes(out)


if __name__ == "__main__":
    data = build()
    (HERE / "sample.rec").write_bytes(data)
    print(f"sample.rec: {len(data)} bytes")
