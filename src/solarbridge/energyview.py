"""Daily, monthly and yearly energy of a site, from the history store.

A site's energy totals (``site:<name>`` ``*_energy_total_wh``, see :mod:`solarbridge.stages.sites`) never
decrease, so the energy of a period is the last total before its end minus the last total before its
start (or the first total inside it, for the period where the history begins). Periods telescope: the sum
of the days is exactly the increase of the total over the range. Boundaries are local midnights in the
site's time zone (DST-aware), each found with one index lookup per series, so a year of 10 s data costs
a few hundred lookups rather than a scan of three million rows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from .stages.sites import ENERGY_METRICS, SITE_PREFIX

By = Literal["day", "month", "year"]
BYS: tuple[str, ...] = ("day", "month", "year")
#: most periods one query may return
MAX_PERIODS = 1200
#: default range when none is given: the last 7 days, 12 months, 5 years
DEFAULT_PERIODS = {"day": 7, "month": 12, "year": 5}


@dataclass(slots=True)
class Period:
    start: datetime
    end: datetime
    kwh: dict[str, float | None] = field(default_factory=dict)


def site_device(site: str) -> str:
    return site if site.startswith(SITE_PREFIX) else SITE_PREFIX + site


def floor_period(t: datetime, by: str, tz: tzinfo) -> datetime:
    lt = t.astimezone(tz)
    if by == "day":
        d = lt.replace(hour=0, minute=0, second=0, microsecond=0)
    elif by == "month":
        d = lt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        d = lt.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    # re-attach the zone at that wall time so the UTC offset is the one in force at the boundary (DST)
    return d.replace(tzinfo=None).replace(tzinfo=tz)


def next_period(t: datetime, by: str, tz: tzinfo) -> datetime:
    naive = t.replace(tzinfo=None)
    if by == "day":
        naive += timedelta(days=1)
    elif by == "month":
        naive = naive.replace(year=naive.year + naive.month // 12, month=naive.month % 12 + 1)
    else:
        naive = naive.replace(year=naive.year + 1)
    return naive.replace(tzinfo=tz)


def boundaries(since: datetime, until: datetime, by: str, tz: tzinfo) -> list[datetime]:
    """Period starts from the one holding ``since`` up to the end of the one holding ``until``."""
    if by not in BYS:
        raise ValueError(f"by: must be one of {', '.join(BYS)} (got {by!r})")
    out = [floor_period(since, by, tz)]
    while out[-1] <= until:
        out.append(next_period(out[-1], by, tz))
        if len(out) > MAX_PERIODS + 1:
            raise ValueError(f"since: the range holds more than {MAX_PERIODS} {by}s; use a larger --by or a "
                             "shorter range")
    return out


def default_since(until: datetime, by: str, tz: tzinfo) -> datetime:
    start = floor_period(until, by, tz)
    for _ in range(DEFAULT_PERIODS[by] - 1):
        start = floor_period(start - timedelta(seconds=1), by, tz)
    return start


def _last_before(db: sqlite3.Connection, sid: int, cuts: list[int]) -> list[float | None]:
    """The last value strictly before each cut (ms), one index probe each, in one statement."""
    values = ",".join("(?)" for _ in cuts)
    sql = (f"WITH b(t) AS (VALUES {values}) SELECT (SELECT value FROM samples WHERE series = ? AND ts_ms < b.t "
           "ORDER BY ts_ms DESC LIMIT 1) FROM b")
    return [r[0] for r in db.execute(sql, (*cuts, sid)).fetchall()]


def site_energy(store: Any, site: str, by: str, since: datetime, until: datetime, tz: tzinfo,
                flows: tuple[str, ...] = tuple(ENERGY_METRICS)) -> list[Period]:
    """kWh per period for each flow of ``site`` (None where the history has no data for that period)."""
    device = site_device(site)
    edges = boundaries(since, until, by, tz)
    cuts = [int(e.timestamp() * 1000) for e in edges]
    until_ms = int(until.timestamp() * 1000)
    periods = [Period(a, b) for a, b in zip(edges, edges[1:], strict=False)]
    with store.lock:
        db = store.db
        for flow in flows:
            row = db.execute("SELECT id FROM series WHERE device_id = ? AND metric = ?",
                             (device, ENERGY_METRICS[flow])).fetchone()
            if row is None:
                for p in periods:
                    p.kwh[flow] = None
                continue
            sid = row[0]
            ends = [min(c, until_ms + 1) for c in cuts]
            last = _last_before(db, sid, ends)
            first = db.execute("SELECT ts_ms, value FROM samples WHERE series = ? AND ts_ms >= ? AND ts_ms <= ? "
                               "ORDER BY ts_ms LIMIT 1", (sid, cuts[0], until_ms)).fetchone()
            for i, p in enumerate(periods):
                start, end = last[i], last[i + 1]
                if start is None and first is not None and cuts[i] <= first[0] < cuts[i + 1]:
                    start = first[1]
                if start is None or end is None or cuts[i] > until_ms:
                    p.kwh[flow] = None
                else:
                    p.kwh[flow] = round(max(end - start, 0.0) / 1000, 3)
    return periods


def site_names(store: Any) -> list[str]:
    """Sites that have energy in the history store."""
    with store.lock:
        rows = store.db.execute("SELECT DISTINCT device_id FROM series WHERE device_id LIKE ? AND metric = ?",
                                (SITE_PREFIX + "%", ENERGY_METRICS["pv"])).fetchall()
        rows += store.db.execute("SELECT DISTINCT device_id FROM series WHERE device_id LIKE ? AND metric = ?",
                                 (SITE_PREFIX + "%", ENERGY_METRICS["load"])).fetchall()
    return sorted({r[0][len(SITE_PREFIX):] for r in rows})
