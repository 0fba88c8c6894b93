"""The embedded history store: SQLite in WAL mode, the daemon's default sink.

One row per numeric metric value: ``samples(series, ts_ms, value)`` with a
``series`` table mapping (device_id, metric) to a small integer. Inserts are
batched in one transaction per sink batch and run in a worker thread so the
event loop never waits on the disk. Booleans are stored as 0/1; strings are not
kept (the ``state`` sink holds the latest string values).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ...model import Reading
from ...plugin import Context, Sink, SinkConfig
from ...util.timeparse import parse_duration

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_type TEXT NOT NULL,
    metric TEXT NOT NULL,
    UNIQUE (device_id, metric)
);
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_series_ts ON samples (series, ts_ms);
-- 5-minute pre-aggregates, kept in step with samples by insert() and prune(): long ranges read these
CREATE TABLE IF NOT EXISTS rollup_5m (
    series INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    total REAL NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (series, bucket_ms)
) WITHOUT ROWID;
"""

#: width of the pre-aggregated buckets; downsample() uses them for steps that are multiples of it
ROLLUP_MS = 300_000
_SCHEMA_VERSION = 1  # PRAGMA user_version: 1 = rollup_5m is complete


@dataclass(slots=True)
class Bucket:
    ts: float  # bucket start, epoch seconds
    min: float
    mean: float
    max: float
    count: int


class HistoryStore:
    """Thread-safe access to the history database (one connection, guarded by a lock)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no history database at {self.path}")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.executescript(SCHEMA)
            self.db.execute("PRAGMA synchronous=NORMAL")
            if self.db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                # a database from before the rollup table: build it once from the samples
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM rollup_5m")
                self.db.execute(
                    f"INSERT INTO rollup_5m SELECT series, ts_ms / {ROLLUP_MS} * {ROLLUP_MS}, MIN(value), MAX(value),"
                    " SUM(value), COUNT(*) FROM samples GROUP BY 1, 2")
                self.db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                self.db.execute("COMMIT")
        self.lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
        if not readonly:
            for sid, dev, metric in self.db.execute("SELECT id, device_id, metric FROM series"):
                self._series[(dev, metric)] = sid

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # ------------------------------------------------------------------ writing
    def _series_id(self, device_id: str, device_type: str, metric: str) -> int:
        key = (device_id, metric)
        sid = self._series.get(key)
        if sid is None:
            cur = self.db.execute(
                "INSERT INTO series (device_id, device_type, metric) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id, metric) DO UPDATE SET device_type = excluded.device_type RETURNING id",
                (device_id, device_type, metric))
            sid = self._series[key] = cur.fetchone()[0]
        return sid

    def rows_for(self, readings: list[Reading]) -> list[tuple[int, int, float]]:
        rows: list[tuple[int, int, float]] = []
        append = rows.append
        series = self._series
        for r in readings:
            ts = int(r.timestamp.timestamp() * 1000)
            dev = r.device_id
            for name, value in r.metrics.items():
                if isinstance(value, str):
                    continue
                fvalue = float(value)
                if math.isnan(fvalue):
                    continue
                sid = series.get((dev, name))
                if sid is None:
                    sid = self._series_id(dev, r.device_type, name)
                append((sid, ts, fvalue))
        return rows

    def insert(self, readings: list[Reading]) -> int:
        """Insert every numeric metric of ``readings`` in one transaction; returns rows written."""
        with self.lock:
            self.db.execute("BEGIN")
            try:
                rows = self.rows_for(readings)
                self.db.executemany("INSERT INTO samples (series, ts_ms, value) VALUES (?, ?, ?)", rows)
                self.db.executemany(
                    "INSERT INTO rollup_5m (series, bucket_ms, lo, hi, total, n) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (series, bucket_ms) DO UPDATE SET lo = min(lo, excluded.lo),"
                    " hi = max(hi, excluded.hi), total = total + excluded.total, n = n + excluded.n",
                    _aggregate(rows))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return len(rows)

    def prune(self, older_than: datetime) -> int:
        """Delete samples older than ``older_than``; returns rows deleted."""
        cutoff = int(older_than.timestamp() * 1000)
        edge = cutoff // ROLLUP_MS * ROLLUP_MS
        with self.lock:
            self.db.execute("BEGIN")
            try:
                cur = self.db.execute("DELETE FROM samples WHERE ts_ms < ?", (cutoff,))
                deleted = cur.rowcount
                self.db.execute("DELETE FROM rollup_5m WHERE bucket_ms < ?", (edge,))
                if cutoff != edge:
                    # the bucket the cutoff cuts through: recompute it from the samples that are left
                    self.db.execute("DELETE FROM rollup_5m WHERE bucket_ms = ?", (edge,))
                    self.db.execute(
                        "INSERT INTO rollup_5m SELECT series, ?, MIN(value), MAX(value), SUM(value), COUNT(*)"
                        " FROM samples WHERE ts_ms >= ? AND ts_ms < ? GROUP BY series",
                        (edge, edge, edge + ROLLUP_MS))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return deleted

    # ------------------------------------------------------------------ reading
    def series(self) -> list[dict[str, str]]:
        with self.lock:
            rows = self.db.execute("SELECT device_id, device_type, metric FROM series ORDER BY 1, 3").fetchall()
        return [{"device_id": d, "device_type": t, "metric": m} for d, t, m in rows]

    def _sid(self, device_id: str, metric: str) -> int | None:
        with self.lock:
            row = self.db.execute("SELECT id FROM series WHERE device_id = ? AND metric = ?",
                                  (device_id, metric)).fetchone()
        return row[0] if row else None

    def query(self, device_id: str, metric: str, since: datetime, until: datetime | None = None,
              limit: int | None = None) -> list[tuple[datetime, float]]:
        """Raw points of one series in ``[since, until]``, oldest first."""
        sid = self._sid(device_id, metric)
        if sid is None:
            return []
        until_ms = int((until or datetime.now(UTC)).timestamp() * 1000)
        sql = "SELECT ts_ms, value FROM samples WHERE series = ? AND ts_ms >= ? AND ts_ms <= ? ORDER BY ts_ms"
        args: tuple[Any, ...] = (sid, int(since.timestamp() * 1000), until_ms)
        if limit:
            sql += " LIMIT ?"
            args += (limit,)
        with self.lock:
            rows = self.db.execute(sql, args).fetchall()
        return [(datetime.fromtimestamp(ts / 1000, UTC), v) for ts, v in rows]

    def downsample(self, device_id: str, metric: str, since: datetime, until: datetime,
                   step: float) -> list[Bucket]:
        """Buckets of ``step`` seconds aligned to the epoch, with min/mean/max/count, oldest first."""
        if step <= 0:
            raise ValueError("step must be positive")
        sid = self._sid(device_id, metric)
        if sid is None:
            return []
        step_ms = int(step * 1000)
        t0, t1 = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
        raw = ("SELECT (ts_ms / ?) * ? AS b, MIN(value), MAX(value), SUM(value), COUNT(*) FROM samples "
               "WHERE series = ? AND ts_ms >= ? AND ts_ms <= ? GROUP BY b ORDER BY b")
        if step_ms % ROLLUP_MS or t1 - t0 < 2 * ROLLUP_MS:
            with self.lock:
                rows = self.db.execute(raw, (step_ms, step_ms, sid, t0, t1)).fetchall()
            return [Bucket(b / 1000, lo, mean_of(total, n, lo, hi), hi, n) for b, lo, hi, total, n in rows]
        # whole 5-minute buckets from the rollup, the partial ones at both ends from the samples
        a0 = -(-t0 // ROLLUP_MS) * ROLLUP_MS  # first whole bucket
        a1 = (t1 + 1) // ROLLUP_MS * ROLLUP_MS  # end (exclusive) of the last whole bucket
        roll = ("SELECT (bucket_ms / ?) * ? AS b, MIN(lo), MAX(hi), SUM(total), SUM(n) FROM rollup_5m "
                "WHERE series = ? AND bucket_ms >= ? AND bucket_ms < ? GROUP BY b ORDER BY b")
        with self.lock:
            parts = self.db.execute(raw, (step_ms, step_ms, sid, t0, a0 - 1)).fetchall()
            parts += self.db.execute(roll, (step_ms, step_ms, sid, a0, a1)).fetchall()
            parts += self.db.execute(raw, (step_ms, step_ms, sid, a1, t1)).fetchall()
        merged: dict[int, list[float]] = {}
        for b, lo, hi, total, n in parts:
            m = merged.get(b)
            if m is None:
                merged[b] = [lo, hi, total, n]
            else:
                m[0], m[1], m[2], m[3] = min(m[0], lo), max(m[1], hi), m[2] + total, m[3] + n
        return [Bucket(b / 1000, lo, mean_of(total, n, lo, hi), hi, int(n))
                for b, (lo, hi, total, n) in sorted(merged.items())]


def _decimals(x: float) -> int:
    """Decimal places in the shortest text of ``x`` (212.2 -> 1, 938.0 -> 0, 9.29e-08 -> 10)."""
    if not math.isfinite(x):
        return 0
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def mean_of(total: float, n: int, lo: float, hi: float) -> float:
    """A bucket's mean, to two decimals more than its samples carry (whole watts -> 0.01 W), so that
    sums of binary floats do not show through (938.1662499999999 -> 938.17)."""
    mean = total / n
    if not math.isfinite(mean):
        return mean
    return round(mean, min(max(_decimals(lo), _decimals(hi)) + 2, 10))


def _aggregate(rows: list[tuple[int, int, float]]) -> list[tuple[int, int, float, float, float, int]]:
    """Rows of one batch folded into 5-minute (series, bucket) aggregates for rollup_5m."""
    acc: dict[tuple[int, int], list[Any]] = {}
    for sid, ts, v in rows:
        key = (sid, ts // ROLLUP_MS * ROLLUP_MS)
        a = acc.get(key)
        if a is None:
            acc[key] = [v, v, v, 1]
        else:
            if v < a[0]:
                a[0] = v
            if v > a[1]:
                a[1] = v
            a[2] += v
            a[3] += 1
    return [(sid, b, lo, hi, total, n) for (sid, b), (lo, hi, total, n) in acc.items()]


class HistoryConfig(SinkConfig):
    type: str = "history"
    path: str = Field("", description="database file; default <state_dir>/history.sqlite")
    retention: str = Field("30d", description="how long samples are kept (e.g. 7d, 90d); 0 keeps forever")
    prune_interval: str = "1h"

    @field_validator("retention", "prune_interval")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class HistorySink(Sink):
    Config = HistoryConfig

    def __init__(self, config: HistoryConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.path = Path(config.path) if config.path else ctx.state_dir / "history.sqlite"
        self.store: HistoryStore | None = None
        self.retention = parse_duration(config.retention)
        self.prune_every = parse_duration(config.prune_interval)
        self._last_prune = 0.0

    async def start(self) -> None:
        if self.store is None:
            self.store = await asyncio.to_thread(HistoryStore, self.path)

    async def write(self, batch: list[Reading]) -> None:
        assert self.store is not None
        n = await asyncio.to_thread(self.store.insert, batch)
        self.ctx.health.count("rows", n)
        now = time.time()
        if self.retention and now - self._last_prune >= self.prune_every:
            self._last_prune = now
            cutoff = datetime.fromtimestamp(now - self.retention, UTC)
            deleted = await asyncio.to_thread(self.store.prune, cutoff)
            self.ctx.health.count("pruned", deleted)

    async def stop(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
