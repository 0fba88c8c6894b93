"""The durable spool: FIFO order, acks, size cap (drop oldest, counted), persistence across reopen."""

from __future__ import annotations

import logging
import os
import stat

from hypothesis import given, settings
from hypothesis import strategies as st

from solarbridge.sinks.spool import Spool


def test_fifo_peek_ack_and_reopen(tmp_path):
    p = tmp_path / "s.sqlite"
    s = Spool(p)
    for i in range(5):
        s.put(f"p{i}\n".encode(), 1)
    assert (s.entries, s.points) == (5, 5)
    first = s.peek(2)
    assert [e.body for e in first] == [b"p0\n", b"p1\n"]
    s.ack(first)
    s.close()
    s = Spool(p)  # survives a restart
    assert (s.entries, s.points, s.bytes) == (3, 3, 9)
    assert [e.body for e in s.peek(100)] == [b"p2\n", b"p3\n", b"p4\n"]
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_one_owner_per_spool(tmp_path):
    import pytest

    from solarbridge.sinks.spool import SpoolBusy

    s = Spool(tmp_path / "s.sqlite")
    with pytest.raises(SpoolBusy, match="in use by another process"):
        Spool(tmp_path / "s.sqlite")
    s.close()
    Spool(tmp_path / "s.sqlite").close()  # free again after close


def test_peek_returns_one_entry_even_if_larger_than_limit(tmp_path):
    s = Spool(tmp_path / "s.sqlite")
    s.put(b"big", 500)
    s.put(b"small", 1)
    assert [e.points for e in s.peek(10)] == [500]
    assert s.peek(0) == s.peek(1)


def test_cap_drops_oldest_with_counter_and_one_log_line(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    s = Spool(tmp_path / "s.sqlite", max_bytes=100, log=logging.getLogger("test.spool"))
    for i in range(30):
        s.put(b"x" * 10, 2, created=1000.0 + i)
    assert s.bytes <= 100
    assert s.entries == 10 and s.points == 20
    assert s.dropped_points == 40
    assert [e.created for e in s.peek(1000)] == [1000.0 + i for i in range(20, 30)]  # the newest kept
    warnings = [r for r in caplog.records if "full" in r.getMessage()]
    assert len(warnings) == 1  # once per drop episode, not per entry
    assert s.oldest_age(now=1100.0) == 80.0


def test_sink_counts_spool_overflow(tmp_path):
    import asyncio
    from datetime import UTC, datetime

    from solarbridge.model import Reading
    from solarbridge.plugin import Context
    from solarbridge.sinks.influx.sink import InfluxConfig, InfluxSink

    async def main() -> Context:
        ctx = Context.standalone("i", "sink", "influxdb2", tmp_path)
        # nothing listens on port 9: everything stays in a 1 kB spool
        sink = InfluxSink(InfluxConfig(type="influxdb2", host="http://127.0.0.1:9", bucket="b",
                                       spool_max_mb=1 / 1024), ctx)
        for i in range(50):
            await sink.write([Reading("d", "inverter", datetime.now(UTC), {"pv_power_w": float(i)})])
        assert sink.pending() < 50
        await sink.stop()
        return ctx

    ctx = asyncio.run(main())
    assert ctx.health.counters["dropped_points"] == 50 - ctx.health.gauges["spool_depth_points"] > 0


def test_discard_counts_dropped(tmp_path):
    s = Spool(tmp_path / "s.sqlite")
    s.put(b"a", 3)
    s.put(b"b", 4)
    s.discard(s.peek(1))
    assert (s.entries, s.points, s.dropped_points) == (1, 4, 3)


ops = st.lists(st.one_of(st.tuples(st.just("put"), st.integers(1, 40), st.integers(1, 5)),
                         st.tuples(st.just("send"), st.integers(1, 12), st.just(0)),
                         st.tuples(st.just("reopen"), st.just(0), st.just(0))), max_size=40)


@settings(max_examples=2000 if os.environ.get("SOLARBRIDGE_FUZZ") else 25)
@given(ops=ops)
def test_spool_matches_a_model(tmp_path_factory, ops):
    """Whatever the interleaving, delivered data is the put data in order, minus what the cap dropped (oldest)."""
    d = tmp_path_factory.mktemp("spool")
    cap = 120
    s = Spool(d / "s.sqlite", max_bytes=cap)
    model: list[tuple[bytes, int]] = []
    delivered: list[bytes] = []
    dropped = 0
    n = 0
    for op, a, b in ops:
        if op == "put":
            body = f"{n:04d}".encode() * (a // 4 + 1)
            n += 1
            s.put(body, b)
            model.append((body, b))
            while sum(len(x) for x, _ in model) > cap and len(model) > 1:
                dropped += model.pop(0)[1]
        elif op == "send":
            got = s.peek(a)
            assert [e.body for e in got] == [x for x, _ in model[:len(got)]]
            s.ack(got)
            delivered += [e.body for e in got]
            del model[:len(got)]
        else:
            s.close()
            s = Spool(d / "s.sqlite", max_bytes=cap)
            dropped = 0  # the counter is per process
        assert s.points == sum(p for _, p in model)
        assert s.entries == len(model)
        assert s.dropped_points == dropped
    assert [e.body for e in s.peek(10**9)] == [x for x, _ in model]
    # delivered in put order, each once
    seq = [int(b[:4]) for b in delivered]
    assert seq == sorted(set(seq))
    s.close()
