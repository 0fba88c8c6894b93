"""Decode rate of the real GivEnergy captures (frames/s, MB/s), framer alone and framer + register model.

    python bench/bench_givenergy_decode.py [--seconds 3]

Concatenates every rx/tx byte stream of tests/data/givenergy/*/*.log (1.6k frames) and feeds it
through the sans-IO framer repeatedly, in 4 KiB chunks like a socket read; then the same with
each read reply applied to a Plant cache and a canonical Reading + GivTCP runAll built per IR 0-59.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from solarbridge.sources.givenergy.framing import Framer, ReadResponse, parse_capture_line
from solarbridge.sources.givenergy.model import Plant
from solarbridge.sources.givenergy.readings import build_reading

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "givenergy"


def streams() -> list[bytes]:
    out = []
    for path in sorted(DATA.glob("*/*.log")):
        for direction in ("rx", "tx"):
            parts = [b for d, b in filter(None, map(parse_capture_line, path.read_text().splitlines()))
                     if d == direction]
            out.append(b"".join(parts))
    return out


def run(seconds: float, model: bool) -> tuple[int, int, float]:
    data = streams()
    frames = nbytes = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for s in data:
            f = Framer()
            plant = Plant()
            for i in range(0, len(s), 4096):
                for fr in f.feed(s[i:i + 4096]):
                    frames += 1
                    if model and isinstance(fr, ReadResponse) and plant.apply(fr) and fr.function == 4 \
                            and fr.base == 0:
                        build_reading(plant)
            nbytes += len(s)
    return frames, nbytes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    frames, nbytes, dt = run(a.seconds, model=False)
    print(f"framer only:            {frames / dt:12,.0f} frames/s  {nbytes / dt / 1e6:6.1f} MB/s")
    frames, nbytes, dt = run(a.seconds, model=True)
    print(f"framer + model/reading: {frames / dt:12,.0f} frames/s  {nbytes / dt / 1e6:6.1f} MB/s")


if __name__ == "__main__":
    main()
