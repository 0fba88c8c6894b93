"""Site model speed: every recorded gateway set (tests/data/enphase/<set>/) through parse_site.

Prints sets/s and MB/s of JSON parsed into the site model (production, consumption, batteries, relay,
generator). A real daemon parses one set per poll (60 s), so this only has to be far from the limit.
"""

from __future__ import annotations

import time
from pathlib import Path

from solarbridge.sources.enphase.site import parse_site

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "enphase"


def main() -> int:
    sets = []
    for d in sorted(p for p in DATA.iterdir() if p.is_dir() and p.name not in ("example", "livedata")):
        sets.append({f.name: f.read_text(errors="replace") for f in d.iterdir()
                     if f.is_file() and f.name not in ("LICENSE", "PROVENANCE.md")})
    size = sum(len(t) for docs in sets for t in docs.values())
    rounds = 20
    t0 = time.perf_counter()
    for _ in range(rounds):
        for docs in sets:
            parse_site(docs)
    took = time.perf_counter() - t0
    n = rounds * len(sets)
    print(f"parse_site: {len(sets)} recorded sets, {size / 1e6:.2f} MB of responses")
    print(f"  {n / took:8.0f} sets/s   {rounds * size / took / 1e6:6.1f} MB/s   {took / n * 1e3:.2f} ms per set")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
