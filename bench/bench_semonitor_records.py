"""`semonitor -o` against the original semonitor.py, per device record type and on a mixed recording.

    python bench/bench_semonitor_records.py --original /path/to/jbuehl/solaredge/semonitor.py [--mb 2]
                                            [--types 0000,0011,mixed] [--repeat 3]

For each record type the script builds a recording whose 0x0500 posts carry records of that type
only (with the server's ACK after each post), with the record builders of the inverter simulator:

- ``0080``, ``0000``, ``0082``: 24 optimizers per post (packed 0x0080, legacy 0x0000, S440 0x0082);
- ``0010``, ``0011``: one single- or three-phase inverter per post;
- ``0030``: two batteries per post; ``0022``: two meter records (import/export, PV) per post;
- ``0300``: two events per post;
- ``mixed``: one post per 5 minutes of a site with two inverters (one single-, one three-phase, each
  with 16 legacy 0x0000 optimizers), a battery and two meter records, plus some 0x0080 optimizers.

It runs the original and ours on the same file (``--mb`` MB), checks that the outputs are
byte-identical and prints CPU times (user + sys of the child, start-up included; best of
``--repeat`` for ours, one run of the original) and the ratio. The original is never fetched: give
its path. Both run with ``TZ=UTC`` and a warm bytecode cache, as installed software does.

``--floor`` also prints, per type, what no decoder written in Python can avoid: our start-up (CPU
time of ``semonitor -o`` on an empty file), cutting the frames out of the stream (in process), and
``repr`` of every float32 field in the output (each float32 widened to a double must be written as
its shortest round-trip text, 16-17 digits for most values, which CPython's dtoa does in 0.3-0.5 us;
the packed optimizers' values are a few hundred multiples of 1/8 V, 1/160 A, ... whose texts are
made once and looked up, so they do not count), next to the time that 20x the original allows.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_solaredge_decode import timed
from solarbridge.sources.solaredge import simulator as sim
from solarbridge.sources.solaredge.framing import Frame, encode

INV, MASTER = 0x7F104920, 0xFFFFFFFE
T0 = 1_700_000_000


def _opt_ids(n: int, base: int = 0x100F0000) -> list[int]:
    return [base + 0x1111 * i for i in range(n)]


def _posts_0080(rng: random.Random, t: int) -> list[bytes]:
    return [sim.record(0x0080, oid | 0x800000, sim.optimizer_0080(t - i, 3000 + i, 30 + rng.random() * 10, 20.0,
                                                                 rng.random() * 9, rng.random() * 500, 30.0))
            for i, oid in enumerate(_opt_ids(24))]


def _posts_0000(rng: random.Random, t: int) -> list[bytes]:
    return [sim.record(0x0000, oid, sim.optimizer_0000(t - i, INV, 3000 + i, 30 + rng.random() * 10,
                                                       20 + rng.random(), rng.random() * 9, rng.random() * 500,
                                                       20 + rng.random() * 30))
            for i, oid in enumerate(_opt_ids(24))]


def _posts_0082(rng: random.Random, t: int) -> list[bytes]:
    return [sim.record(0x0082, oid | 0x800000, sim.optimizer_0080(t - i, 3000 + i, 30 + rng.random() * 10, 20.0,
                                                                 rng.random() * 9, 0, 0)[:10])
            for i, oid in enumerate(_opt_ids(24))]


def _inv1(rng: random.Random, t: int, inv: int = INV) -> bytes:
    return sim.record(0x0010, inv, sim.inverter_0010(t, 86400 + t % 9999, 300, 40 + rng.random() * 9,
                                                     rng.random() * 9999, rng.random() * 300, 230 + rng.random(),
                                                     rng.random() * 20, 50 + rng.random() / 10, 380 + rng.random(),
                                                     1e7 + rng.random() * 1e5, 5000.0, rng.random() * 5000))


def _inv3(rng: random.Random, t: int, inv: int = INV) -> bytes:
    return sim.record(0x0011, inv, sim.inverter_0011(t, 86400 + t % 9999, 300, 40 + rng.random() * 9,
                                                     rng.random() * 9999, rng.random() * 300,
                                                     (230 + rng.random(), 231 + rng.random(), 229 + rng.random()),
                                                     (rng.random() * 9, rng.random() * 9, rng.random() * 9),
                                                     50 + rng.random() / 10, 600 + rng.random(),
                                                     1e7 + rng.random() * 1e5))


def _battery(rng: random.Random, t: int, n: int) -> bytes:
    return sim.record(0x0030, INV, sim.battery_0030(t, f"BAT{n:04d}", 50 + rng.random(), rng.random() * 9 - 4,
                                                    9800.0, 9500.0, rng.random() * 9500, 100000 + t % 777,
                                                    90000 + t % 555, 25 + rng.random() * 5, 3, 300, 120, 80))


def _meters(rng: random.Random, t: int) -> list[bytes]:
    return [sim.record(0x0022, INV, sim.meter_0022(t, 5, 0, 123456 + t % 999, 654321 + t % 777, 300, 20, 30,
                                                   rng.random() * 3000, rng.random() * 3000)),
            sim.record(0x0022, INV, sim.meter_0022(t, 9, 1, 0, 0, 300, 40, 0, rng.random() * 3000, None))]


def _events(rng: random.Random, t: int) -> list[bytes]:
    return [sim.record(0x0300, INV, sim.event_0300(t, 0, t - 600, 3600, rng.randrange(1 << 20))),
            sim.record(0x0300, INV + 1, sim.event_0300(t, 1, t - 900, t - 300, t))]


def _mixed(rng: random.Random, t: int) -> list[bytes]:
    inv2 = INV + 0x10
    out = [_inv1(rng, t), _inv3(rng, t, inv2)]
    for inv, base in ((INV, 0x100F0000), (inv2, 0x200F0000)):
        out += [sim.record(0x0000, oid, sim.optimizer_0000(t - i, inv, 3000 + i, 30 + rng.random() * 10,
                                                           20 + rng.random(), rng.random() * 9, rng.random() * 500,
                                                           20 + rng.random() * 30))
                for i, oid in enumerate(_opt_ids(16, base))]
    out += _posts_0080(rng, t)[:4]
    out.append(_battery(rng, t, 1))
    out += _meters(rng, t)
    return out


TYPES: dict[str, Callable[[random.Random, int], list[bytes]]] = {
    "0080": _posts_0080,
    "0000": _posts_0000,
    "0082": _posts_0082,
    "0010": lambda rng, t: [_inv1(rng, t)],
    "0011": lambda rng, t: [_inv3(rng, t)],
    "0030": lambda rng, t: [_battery(rng, t, 1), _battery(rng, t, 2)],
    "0022": _meters,
    "0300": _events,
    "mixed": _mixed,
}


def build(kind: str, size: int, seed: int = 1) -> tuple[bytes, int]:
    """A recording of about ``size`` bytes: posts of ``kind``, each followed by the server's ACK."""
    rng = random.Random(seed)
    make = TYPES[kind]
    out = bytearray()
    posts = 0
    t = T0
    while len(out) < size:
        posts += 1
        t += 300
        seq = posts & 0xFFFF
        out += encode(Frame(seq, INV, MASTER, 0x0500, b"".join(make(rng, t))))
        out += encode(Frame(seq, MASTER, INV, 0x0080))
    return bytes(out), posts


def _floats(obj: object, out: list[float]) -> None:
    if isinstance(obj, float):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _floats(v, out)


def floor_parts(data: bytes, repeat: int) -> tuple[float, float, int]:
    """(seconds to cut the frames out of ``data``, seconds of ``repr`` of every float of the output, floats)."""
    from solarbridge.sources.solaredge.framing import StreamDecoder
    from solarbridge.sources.solaredge.records import iter_records, parse_post_data

    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    best_decode = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        dec = StreamDecoder()
        frames = [f for c in chunks for f in dec.feed(c)]
        best_decode = min(best_decode, time.process_time() - t0)
    values: list[float] = []
    for f in frames:
        if f.function == 0x0500 and f.payload:
            # the float32 fields; not the packed optimizers' (0x0080, 0x0082): their values are multiples
            # of 1/8 V, 1/160 A, ... whose texts are made once and looked up
            _floats(parse_post_data(b"".join(sim.record(t, i, d) for t, i, _, d in iter_records(f.payload)
                                             if t not in (0x0080, 0x0082))), values)
    best_repr = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        list(map(repr, values))
        best_repr = min(best_repr, time.process_time() - t0)
    return best_decode, best_repr, len(values)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", help="path to the original semonitor.py (not fetched; without it, nothing is run)")
    p.add_argument("--mb", type=float, default=2.0, help="recording size per type in MB (default 2)")
    p.add_argument("--types", default=",".join(TYPES), help=f"comma separated, of {', '.join(TYPES)}")
    p.add_argument("--repeat", type=int, default=3, help="runs of ours (best CPU time counts)")
    p.add_argument("--floor", action="store_true", help="also print start-up, frame cutting and float texts")
    a = p.parse_args()
    if not a.original:  # (make bench runs every script without arguments)
        print("skipped: give --original PATH/semonitor.py (jbuehl/solaredge; never fetched by this script)")
        return 0
    kinds = [k.strip() for k in a.types.split(",") if k.strip()]
    for k in kinds:
        if k not in TYPES:
            p.error(f"--types: unknown type {k!r} (allowed: {', '.join(TYPES)})")
    ours_cmd = [sys.executable, "-m", "solarbridge.cli.semonitor"]
    orig_cmd = [sys.executable, a.original]
    print(f"{'records':>8} {'MB':>5} {'posts':>6} {'original s':>10} {'ours s':>7} {'ratio':>6}  identical")
    worst = float("inf")
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TZ="UTC", PYTHONPYCACHEPREFIX=str(Path(d) / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tiny = Path(d) / "tiny.rec"
        tiny.write_bytes(build("mixed", 3000)[0])
        for cmd in (ours_cmd, orig_cmd):  # fill the bytecode cache
            subprocess.run([*cmd, "-o", str(Path(d) / "warm.json"), str(tiny)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        floors = []
        if a.floor:
            empty = Path(d) / "empty.rec"
            empty.write_bytes(b"")
            startup = timed([*ours_cmd, "-o", str(Path(d) / "empty.json"), str(empty)], env, max(a.repeat, 10))
        for kind in kinds:
            data, posts = build(kind, int(a.mb * 1e6))
            rec = Path(d) / f"{kind}.rec"
            rec.write_bytes(data)
            o1, o2 = Path(d) / "orig.json", Path(d) / "ours.json"
            t_orig = timed([*orig_cmd, "-o", str(o1), str(rec)], env, 1, o1)
            t_ours = timed([*ours_cmd, "-o", str(o2), str(rec)], env, a.repeat, o2)
            same = o1.read_bytes() == o2.read_bytes()
            ratio = t_orig / t_ours
            worst = min(worst, ratio)
            print(f"{kind:>8} {len(data) / 1e6:5.1f} {posts:6d} {t_orig:10.2f} {t_ours:7.3f} {ratio:5.1f}x  {same}",
                  flush=True)
            if not same:
                print(f"OUTPUT DIFFERS for {kind}", file=sys.stderr)
            if a.floor:
                floors.append((kind, t_orig, *floor_parts(data, a.repeat)))
    print(f"slowest ratio: {worst:.1f}x")
    if a.floor:
        print(f"\nstart-up (empty file): {startup:.3f} s")
        print(f"{'records':>8} {'floats':>7} {'float texts s':>13} {'frames s':>8} {'floor s':>7} {'20x allows s':>12}")
        for kind, t_orig, t_decode, t_repr, n in floors:
            print(f"{kind:>8} {n:7d} {t_repr:13.3f} {t_decode:8.3f} {startup + t_decode + t_repr:7.3f} "
                  f"{t_orig / 20:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
