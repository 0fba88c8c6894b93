"""Decode throughput of `semonitor -o` on a large recorded byte stream (frames/s, MB/s).

    python bench/bench_solaredge_decode.py [--mb 20] [--original /path/to/jbuehl/semonitor.py]

Builds a deterministic stream like a real site's (0x0500 posts of one inverter + 24 optimizers,
with --batteries N also batteries and meter records; ACKs, GMT exchanges and some junk), runs our `semonitor -o` on it and
prints the figures. With --original, also runs the original semonitor.py on the same file
(the first --original-mb MB, as it is slow), checks the outputs are identical and prints the ratio
on that file (start-up included) and the sustained ratio (MB/s on the large file against MB/s of
the original).

Both programs run as installed software does: with Python's bytecode cache (kept in a temporary
directory through PYTHONPYCACHEPREFIX, warmed by one untimed run of each), so neither pays for
compiling its modules on every start. --no-bytecode-cache measures with PYTHONDONTWRITEBYTECODE=1
instead. Each timed run writes a fresh output file.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from solarbridge.sources.solaredge import simulator as sim
from solarbridge.sources.solaredge.framing import Frame, encode


def build_stream(size: int, seed: int = 1, batteries: int = 0) -> tuple[bytes, int]:
    rng = random.Random(seed)
    site = sim.make_site(1, 24, batteries, seed=seed)
    site[0].sun = 0.6
    inv = site[0].inverter_id
    out = bytearray()
    frames = 0
    t = 1_700_000_000
    seq = 0
    while len(out) < size:
        seq = (seq + 1) & 0xFFFF
        t += 300
        out += encode(Frame(seq, inv, 0xFFFFFFFE, 0x0500, site[0].telemetry(t)))
        out += encode(Frame(seq, 0xFFFFFFFE, inv, 0x0080))
        frames += 2
        if seq % 50 == 0:
            out += encode(Frame(seq, inv, 0xFFFFFFFE, 0x0501)) + encode(
                Frame(seq, 0xFFFFFFFE, inv, 0x0580, b"\x00" * 8))
            out += bytes(rng.randrange(256) for _ in range(16)).replace(b"\x12\x34", b"\x12\x00")
            frames += 2
    return bytes(out), frames


def timed(cmd: list[str], env: dict[str, str], repeat: int = 1, out: Path | None = None) -> float:
    """Best CPU time (user + sys) of the child over ``repeat`` runs.

    CPU time, not wall time: the benchmark machine is shared, and CPU time of a single-threaded
    decoder is what contention disturbs least. ``out`` (the output file) is removed before each
    run, so no run pays for truncating the previous one's output.
    """
    best = float("inf")
    for _ in range(repeat):
        if out is not None:
            out.unlink(missing_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=float, default=20.0)
    p.add_argument("--original", help="path to the original semonitor.py, to compare")
    p.add_argument("--original-mb", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=3, help="runs of our decoder (best CPU time counts)")
    p.add_argument("--batteries", type=int, default=0, help="batteries (+ meter records) in each post")
    p.add_argument("--no-bytecode-cache", action="store_true", help="run both programs with PYTHONDONTWRITEBYTECODE=1")
    a = p.parse_args()
    ours_cmd = [sys.executable, "-m", "solarbridge.cli.semonitor"]
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TZ="UTC")
        if a.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(d) / "pycache")
        tiny = Path(d) / "tiny.rec"
        tiny.write_bytes(build_stream(1000, batteries=a.batteries)[0])
        warm = [ours_cmd] + ([[sys.executable, a.original]] if a.original else [])
        for cmd in warm:  # fills the bytecode cache (or, without one, does nothing useful)
            subprocess.run([*cmd, "-o", str(Path(d) / "warm.json"), str(tiny)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        data, frames = build_stream(int(a.mb * 1e6), batteries=a.batteries)
        rec = Path(d) / "big.rec"
        rec.write_bytes(data)
        out = Path(d) / "ours.json"
        ours = timed([*ours_cmd, "-o", str(out), str(rec)], env, a.repeat, out)
        lines = out.read_bytes().count(b"\n")
        mb = len(data) / 1e6
        print(f"semonitor -o (solarbridge): {mb:.1f} MB, {frames} frames, {lines} JSON lines in {ours:.2f} s CPU "
              f"= {frames / ours:,.0f} frames/s, {mb / ours:.2f} MB/s"
              f"{' (no bytecode cache)' if a.no_bytecode_cache else ''}")
        if a.original:
            small, sframes = build_stream(int(a.original_mb * 1e6), batteries=a.batteries)
            srec = Path(d) / "small.rec"
            srec.write_bytes(small)
            o1, o2 = Path(d) / "orig.json", Path(d) / "ours_small.json"
            t_orig = timed([sys.executable, a.original, "-o", str(o1), str(srec)], env, 1, o1)
            t_ours = timed([*ours_cmd, "-o", str(o2), str(srec)], env, a.repeat, o2)
            same = o1.read_bytes() == o2.read_bytes()
            smb = len(small) / 1e6
            print(f"original semonitor.py:      {smb:.1f} MB, {sframes} frames in {t_orig:.2f} s CPU "
                  f"= {sframes / t_orig:,.0f} frames/s, {smb / t_orig:.3f} MB/s")
            print(f"solarbridge on same file:   {t_ours:.2f} s CPU = {sframes / t_ours:,.0f} frames/s; "
                  f"speed-up {t_orig / t_ours:.1f}x; identical output: {same}")
            print(f"sustained speed-up (MB/s on {mb:.0f} MB vs the original's MB/s): {mb / ours / (smb / t_orig):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
