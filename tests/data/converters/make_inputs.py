"""Regenerate the converter test inputs from the SolarEdge codec (and simulator).

    TZ=UTC python tests/data/converters/make_inputs.py

recorded.json  : the device records of ../../../../shared/reference/solaredge/records.txt (real captures from
                 jbuehl/solaredge issues #178, #4, #8, #11, see that folder's frames.md), grouped per source
                 frame into 0x0500 payloads and decoded by solarbridge.sources.solaredge.records.parse_post_data,
                 written as semonitor writes its lines (jsonout.line), with TZ=UTC; last line: the complete
                 recorded 0x0500 frame i136_0500_meter0022 from frames.txt, decoded by the frame codec.
simulated.json : six telemetry messages of a simulated site (two inverters, one three-phase, three optimizers
                 each, one battery with meters) from solarbridge.sources.solaredge.simulator, decoded the same
                 way, plus one wake/sleep event message; fixed clock, TZ=UTC.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the copy of ../shared/reference/solaredge/records.txt (and frames.txt beside it) kept in tests/data
RECORDS = HERE.parent / "solaredge" / "records.txt"


def recorded_lines(records_txt: Path = RECORDS) -> list[bytes]:
    from solarbridge.sources.solaredge.jsonout import line
    from solarbridge.sources.solaredge.records import parse_post_data

    groups: dict[str, list[bytes]] = {}
    for text in records_txt.read_text().splitlines():
        if not text.strip() or text.startswith("#"):
            continue
        rec_id, hexdata = text.split()
        groups.setdefault(rec_id.split("_")[0], []).append(bytes.fromhex(hexdata))
    out = [line(parse_post_data(b"".join(recs))) for _, recs in sorted(groups.items())]
    # the one complete, CRC-valid recorded 0x0500 frame (issue #136, meter record), through the frame codec
    from solarbridge.sources.solaredge.framing import decode

    for text in (records_txt.parent / "frames.txt").read_text().splitlines():
        if text.startswith("i136_0500_meter0022 "):
            out.append(line(parse_post_data(decode(bytes.fromhex(text.split()[1])).payload)))
    return out


def simulated_lines() -> list[bytes]:
    from solarbridge.sources.solaredge.jsonout import line
    from solarbridge.sources.solaredge.records import parse_post_data
    from solarbridge.sources.solaredge.simulator import event_0300, make_site, record

    t0 = 1_781_000_000  # 2026-06-09 10:13:20 UTC, daylight for the simulator's sun curve
    site = make_site(1, 3, 1, seed=7)
    site += make_site(1, 3, 0, three_phase=True, seed=8)
    site[1].inverter_id += 0x1000
    site[1].optimizer_ids = [x + 0x100 for x in site[1].optimizer_ids]
    for m in site:
        m.boot = t0 - 86_400
        m.last = t0 - 300
    out = []
    for i in range(6):
        now = t0 + 300 * i
        out.append(line(parse_post_data(b"".join(m.telemetry(now) for m in site))))
    ev = record(0x0300, site[0].inverter_id, event_0300(t0 + 1800, 1, t0 + 1800, 0, t0 + 1800 + 36_000))
    out.append(line(parse_post_data(ev)))
    return out


if __name__ == "__main__":
    if os.environ.get("TZ") != "UTC":
        sys.exit("run with TZ=UTC")
    time.tzset()
    (HERE / "recorded.json").write_bytes(b"".join(recorded_lines()))
    (HERE / "simulated.json").write_bytes(b"".join(simulated_lines()))
    print("wrote recorded.json and simulated.json")
