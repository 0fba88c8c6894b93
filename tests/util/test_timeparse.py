from datetime import UTC, datetime, timedelta

import pytest

from solarbridge.util.timeparse import parse_duration, parse_time

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("2w", 1209600),
                                          ("250ms", 0.25), ("42", 42), (" 1.5h ", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "h", "1y", "-5m", "5 minutes"])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


def test_times():
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("1h", now=NOW) == NOW - timedelta(hours=1)
    assert parse_time("1767225600", now=NOW) == datetime(2026, 1, 1, tzinfo=UTC)  # a bare number is a Unix time
    assert parse_time("2026-01-31T12:00:00Z", now=NOW) == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_time("2026-01-31T12:00:00", now=NOW) == datetime(2026, 1, 31, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time: 'soon'"):
        parse_time("soon", now=NOW)
