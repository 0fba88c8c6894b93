"""Rendezvous assignment: every device on exactly one worker, bounded movement, stable across processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from solarbridge.fleet.shard import MAX_WORKERS, Shard, assign, owner, parse, resolve

KEYS = [f"givenergy:SA{i:08d}" for i in range(1500)] + [f"givenergy:10.9.{i // 250}.{i % 250}:8899"
                                                         for i in range(500)]


def _binomial_bound(n: int, p: float, sigmas: float = 6.0) -> tuple[float, float]:
    mean = n * p
    sd = math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


@pytest.mark.parametrize("n", range(1, 17))
def test_every_device_on_exactly_one_worker(n):
    keys = KEYS[::2]
    workers = [Shard(k, n) for k in range(n)]
    held = {k: [w.index for w in workers if w.owns(k)] for k in keys}
    assert all(len(v) == 1 for v in held.values()), "a device held by none or by several workers"
    counts = [sum(1 for v in held.values() if v == [w.index]) for w in workers]
    assert sum(counts) == len(keys)
    lo, hi = _binomial_bound(len(keys), 1 / n)
    assert all(lo <= c <= hi for c in counts), counts  # no worker is starved or swamped


@pytest.mark.parametrize("n", range(1, 16))
def test_growing_moves_only_to_the_new_worker_and_about_one_in_n_plus_one(n):
    before, after = assign(KEYS, n), assign(KEYS, n + 1)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == n for k in moved), "a device moved between two workers that both stayed"
    lo, hi = _binomial_bound(len(KEYS), 1 / (n + 1))
    assert lo <= len(moved) <= hi, (len(moved), len(KEYS) / (n + 1))


@pytest.mark.parametrize("n", range(2, 17))
def test_shrinking_moves_only_the_removed_workers_devices(n):
    before, after = assign(KEYS, n), assign(KEYS, n - 1)
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == n - 1}


def test_assignment_is_the_same_in_another_process_with_another_hash_seed(tmp_path):
    # the builtin hash() is salted per process: a worker using it would disagree with its peers
    code = ("import json,sys; from solarbridge.fleet.shard import assign; "
            "keys=json.load(sys.stdin); print(json.dumps(assign(keys, 7)))")
    sample = KEYS[::40]
    outs = []
    for seed in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", code], input=json.dumps(sample), capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed,
                                "PYTHONPATH": str(Path(__file__).parents[2] / "src")}, timeout=60, check=True)
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1] == assign(sample, 7)


def test_owner_needs_a_worker():
    with pytest.raises(ValueError):
        owner("x", 0)


@pytest.mark.parametrize(("text", "env", "host", "want"), [
    ("0/1", {}, "h", (0, 1)),
    (" 3 / 8 ", {}, "h", (3, 8)),
    ("ordinal/4", {}, "solarbridge-2", (2, 4)),
    ("ordinal/4", {}, "solarbridge-3.solarbridge.fleet.svc.cluster.local", (3, 4)),
    ("ordinal/4", {"SOLARBRIDGE_SHARD_INDEX": "1"}, "no-ordinal-here", (1, 4)),
])
def test_parse(text, env, host, want):
    s = parse(text, env, host)
    assert (s.index, s.count) == want and s.label == f"{want[0]}/{want[1]}"


@pytest.mark.parametrize(("text", "env", "host", "needle"), [
    ("4/4", {}, "h", "k must be 0..3 (got '4/4')"),
    ("1/0", {}, "h", f"n must be 1..{MAX_WORKERS}"),
    ("1", {}, "h", 'must be "k/n"'),
    ("a/3", {}, "h", "k must be a number 0..2 or 'ordinal'"),
    ("-1/3", {}, "h", "k must be a number 0..2 or 'ordinal'"),
    ("ordinal/4", {}, "workstation", "a host name ending in -<number>"),
    ("ordinal/4", {}, "solarbridge-4", "the pod ordinal 4 is not below the worker count 4"),
    ("ordinal/4", {"SOLARBRIDGE_SHARD_INDEX": "x"}, "solarbridge-1", "SOLARBRIDGE_SHARD_INDEX must be a number"),
])
def test_parse_errors_name_what_is_allowed(text, env, host, needle):
    with pytest.raises(ValueError) as e:
        parse(text, env, host)
    assert needle in str(e.value)


def test_environment_wins_over_the_config():
    assert resolve("1/2", {"SOLARBRIDGE_SHARD": "2/3"}, "h") == (Shard(2, 3), "SOLARBRIDGE_SHARD")
    assert resolve("1/2", {}, "h") == (Shard(1, 2), "daemon.shard")
    assert resolve("", {}, "h") == (None, "")
