"""The supervisor: fan-out isolation, restart with backoff, logging once per state change, shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from servers import async_wait_for
from solarbridge.runtime import SinkQueue, Supervisor
from solarbridge.util import aiorun
from support.runtime import CollectSink, FailingSource, ListSource, RaisingSink, config, reading


def run(coro):
    return aiorun.run(asyncio.wait_for(coro, 30))




def test_sink_queue_drops_oldest_and_counts():
    async def go():
        q = SinkQueue(3)
        for i in range(5):
            q.put(reading(i))
        assert q.dropped == 2
        batch = await q.get_batch(10)
        assert [r.metrics["n"] for r in batch] == [2, 3, 4]
        q.put(reading(9))
        q.requeue(batch)
        assert [r.metrics["n"] for r in await q.get_batch(10)] == [3, 4, 9]
        assert q.dropped == 3
    run(go())


def test_every_sink_gets_every_reading_in_order(tmp_path):
    async def go():
        sup = Supervisor(config(tmp_path))
        sinks = [CollectSink(f"s{i}", tmp_path) for i in range(3)]
        for s in sinks:
            sup.add_sink(s)
        sup.add_source(ListSource("src", tmp_path, 5000))
        await sup.start()
        await sup.wait_sources()
        await sup.stop()
        for s in sinks:
            assert [r.metrics["n"] for r in s.got] == list(range(5000))
            assert s.flushed and s.stopped
    run(go())


def test_raising_sink_does_not_stop_others(tmp_path, caplog):
    async def go():
        sup = Supervisor(config(tmp_path, shutdown_timeout=1))
        good = CollectSink("good", tmp_path)
        bad = RaisingSink("bad", tmp_path)
        sup.add_sink(bad)
        sup.add_sink(good)
        sup.add_source(ListSource("src", tmp_path, 1000, pause=0.001))
        await sup.start()
        await sup.wait_sources()
        await async_wait_for(lambda: len(good.got) == 1000)
        assert sup.health["bad"].state == "failed"
        assert sup.health["bad"].restarts >= 2
        assert sup.health["good"].state == "running"
        await sup.stop()
        return sup
    with caplog.at_level(logging.WARNING, logger="solarbridge.runtime"):
        sup = run(go())
    # the broken sink failed many times but is logged once (one state change)
    fails = [r for r in caplog.records if "sink bad failed" in r.getMessage()]
    assert len(fails) == 1, [r.getMessage() for r in caplog.records]
    assert sup.health["bad"].restarts >= 2


def test_slow_sink_does_not_block_fast_sink(tmp_path):
    async def go():
        sup = Supervisor(config(tmp_path))
        slow = CollectSink("slow", tmp_path, delay=0.2, queue_size=50)
        fast = CollectSink("fast", tmp_path)
        sup.add_sink(slow)
        sup.add_sink(fast)
        sup.add_source(ListSource("src", tmp_path, 2000))
        await sup.start()
        await sup.wait_sources()
        await async_wait_for(lambda: len(fast.got) == 2000, 2)
        assert len(slow.got) < 2000
        assert sup._sink_queues["slow"].dropped > 0
        await sup.stop()
    run(go())


def test_failed_write_is_retried_without_loss(tmp_path):
    async def go():
        sup = Supervisor(config(tmp_path))
        sink = CollectSink("flaky", tmp_path, fail_first=3)
        sup.add_sink(sink)
        sup.add_source(ListSource("src", tmp_path, 500))
        await sup.start()
        await sup.wait_sources()
        await async_wait_for(lambda: len(sink.got) == 500)
        assert [r.metrics["n"] for r in sink.got] == list(range(500))
        assert sup.health["flaky"].restarts == 3
        await sup.stop()
    run(go())


def test_source_restarts_with_growing_backoff_and_recovers(tmp_path, caplog):
    async def go():
        sup = Supervisor(config(tmp_path, backoff_initial=0.2, backoff_cap=2.0))
        src = FailingSource(tmp_path, failures=4)
        sink = CollectSink("c", tmp_path)
        sup.add_sink(sink)
        sup.add_source(src)
        await sup.start()
        await async_wait_for(lambda: len(sink.got) == 1)
        assert sup.health["flaky"].state == "running"
        await sup.stop()
        return src
    with caplog.at_level(logging.INFO, logger="solarbridge.runtime"):
        src = run(go())
    gaps = [b - a for a, b in zip(src.starts, src.starts[1:], strict=False)]
    assert len(gaps) == 4
    # exponential: each delay about double the previous (10% jitter), capped at 2 s; long enough that a loaded machine's scheduling delay does not blur the ratio
    assert gaps[1] > gaps[0] * 1.4 and gaps[2] > gaps[1] * 1.4
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("source flaky failed" in m for m in msgs) == 1
    assert any("source flaky recovered after 4 restart(s)" in m for m in msgs)


def test_shutdown_flushes_queued_readings(tmp_path):
    async def go():
        sup = Supervisor(config(tmp_path, shutdown_timeout=2))
        slow = CollectSink("slow", tmp_path, delay=0.05)
        sup.add_sink(slow)
        sup.add_source(ListSource("src", tmp_path, 3000, per_tick=3000))
        await sup.start()
        await sup.wait_sources()
        t0 = asyncio.get_running_loop().time()
        await sup.stop()
        took = asyncio.get_running_loop().time() - t0
        assert len(slow.got) == 3000
        assert slow.flushed
        return took
    assert run(go()) < 5


def test_control_routing_unknown_device(tmp_path):
    from solarbridge.model import ControlError, ControlRequest

    async def go():
        sup = Supervisor(config(tmp_path))
        with pytest.raises(ControlError) as e:
            await sup.control(ControlRequest("nope", "x", 1))
        assert e.value.status == 404
    run(go())


def test_shutdown_is_bounded_even_if_a_source_ignores_cancel(tmp_path, caplog):
    from support.runtime import StubbornSource

    async def go():
        sup = Supervisor(config(tmp_path, shutdown_timeout=2))
        sink = CollectSink("c", tmp_path)
        sup.add_sink(sink)
        sup.add_source(StubbornSource(tmp_path))
        await sup.start()
        await async_wait_for(lambda: len(sink.got) == 1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await sup.stop()
        return loop.time() - t0, sink
    with caplog.at_level(logging.ERROR, logger="solarbridge.runtime"):
        took, sink = run(go())
    assert took < 3
    assert sink.flushed
    assert any("source:stubborn did not stop" in r.getMessage() for r in caplog.records)
