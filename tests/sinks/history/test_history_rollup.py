"""downsample() through the 5-minute rollup equals bucketing the raw points, before and after pruning."""

from __future__ import annotations

import math
import sqlite3
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from solarbridge.model import Reading
from solarbridge.sinks.history.sink import HistoryStore

T0 = 1_790_000_000  # a multiple of 300? no: exercises unaligned starts too


def dt(s: float) -> datetime:
    return datetime.fromtimestamp(s, UTC)


def reference(points: list[tuple[datetime, float]], step: float) -> list[tuple[float, float, float, float, int]]:
    """Independent bucketing in Python: (start, min, mean, max, count) per epoch-aligned step."""
    step_ms = int(step * 1000)
    acc: dict[int, list[float]] = {}
    for t, v in points:
        b = int(t.timestamp() * 1000) // step_ms * step_ms
        acc.setdefault(b, []).append(v)
    return [(b / 1000, min(vs), sum(vs) / len(vs), max(vs), len(vs)) for b, vs in sorted(acc.items())]


def same(store: HistoryStore, since: datetime, until: datetime, step: float) -> None:
    got = [(b.ts, b.min, b.mean, b.max, b.count) for b in store.downsample("dev", "m", since, until, step)]
    want = reference(store.query("dev", "m", since, until), step)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[0] == w[0] and g[1] == w[1] and g[3] == w[3] and g[4] == w[4]
        # a mean is kept to two decimals more than its samples carry (0, 0, 1 -> 0.33), at most 10
        places = min(max(_places(w[1]), _places(w[3])) + 2, 10)
        assert math.isclose(g[2], w[2], rel_tol=1e-9, abs_tol=0.5 * 10**-places + 1e-12), (g, w)


def _places(x: float) -> int:
    """Decimal places of the shortest text of ``x`` (0.25 -> 2, 9.29e-08 -> 10, 300.0 -> 0)."""
    exponent = Decimal(repr(x)).normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


@given(st.lists(st.tuples(st.integers(0, 30_000), st.floats(-1e4, 1e4)), min_size=1, max_size=300),
       st.integers(0, 30_000), st.integers(1, 30_000),
       st.sampled_from([300, 600, 900, 1800, 3600, 7, 60, 1200, 86400]),
       st.one_of(st.none(), st.integers(0, 30_000)), st.integers(1, 4))
def test_rollup_matches_raw_bucketing(points, start, length, step, prune_at, batches):
    with tempfile.TemporaryDirectory() as d:
        store = HistoryStore(Path(d) / "h.sqlite")
        rs = [Reading("dev", "t", dt(T0 + off), {"m": v, "other": v * 2}) for off, v in points]
        k = max(1, len(rs) // batches)
        for i in range(0, len(rs), k):
            store.insert(rs[i:i + k])
        same(store, dt(T0 + start), dt(T0 + start + length), step)
        if prune_at is not None:
            store.prune(dt(T0 + prune_at))
            same(store, dt(T0 + start), dt(T0 + start + length), step)
        store.close()


def test_old_database_gets_its_rollup_built(tmp_path):
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    store.insert([Reading("dev", "t", dt(T0 + 10 * i), {"m": float(i)}) for i in range(1000)])
    store.close()
    db = sqlite3.connect(path)  # make it look like a database from before the rollup existed
    db.execute("DELETE FROM rollup_5m")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    store = HistoryStore(path)
    same(store, dt(T0), dt(T0 + 10_000), 900)
    assert store.downsample("dev", "m", dt(T0), dt(T0 + 10_000), 900)


def test_means_of_tiny_values_keep_their_significant_digits():
    """Rounding a mean "two decimals past its samples" must count decimals of 9.29e-08 as 10, not 6."""
    from solarbridge.sinks.history.sink import mean_of

    assert math.isclose(mean_of(3 * 9.29e-08, 3, 9.29e-08, 9.29e-08), 9.29e-08, rel_tol=1e-9)
    assert mean_of(938.1 + 938.2 + 938.2, 3, 938.1, 938.2) == 938.167  # no binary noise (938.1666666666666)
