"""Parse durations ("90s", "15m", "1h", "7d") and times (ISO 8601, epoch, or a duration ago)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``"1h"``, ``"30m"``, ``"7d"`` or a plain number of seconds."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative (got {text})")
        return float(text)
    m = _DUR_RE.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h, d or w, e.g. 15m, 1h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An absolute UTC time from ISO 8601, a Unix epoch, ``now`` or a duration meaning "that long ago"."""
    now = now or datetime.now(UTC)
    t = text.strip()
    if t == "now":
        return now
    try:
        # a bare number is a Unix time; a duration ago needs its unit ("3600s", "1h")
        return datetime.fromtimestamp(float(t), UTC)
    except ValueError:
        pass
    try:
        return now - timedelta(seconds=parse_duration(t))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 like 2026-01-31T12:00:00Z, a Unix epoch, or a duration ago like 1h)"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def zone(name: str) -> tzinfo:
    """An IANA time zone, or the system's local zone for ``""``; ValueError naming the zone when unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/London)") from None


def check_zone(name: str) -> str:
    """A config validator: ``name`` itself when it is "" (the system's zone) or a known IANA zone."""
    zone(name)
    return name
