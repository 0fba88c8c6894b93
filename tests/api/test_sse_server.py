"""The real web service on a loopback port: start-up, SSE streams, shutdown, history from the running sink."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers import wait_for
from solarbridge.api.server import exposure_warning, is_loopback, parse_listen
from solarbridge.api.sse import Broadcaster
from solarbridge.runtime import Bus
from support.api import T0, reading, run
from support.live import LiveDaemon


def read_events(lines, want: int, timeout: float = 10) -> list[tuple[str, dict]]:
    """Parse SSE frames from a streaming response's lines until `want` events arrived."""
    if isinstance(lines, httpx.Response):
        lines = lines.iter_lines()
    lines = iter(lines)
    out: list[tuple[str, dict]] = []
    event = ""

    def next_line() -> list[tuple[str, dict]] | None:  # blocks for one line, within the client's read timeout
        nonlocal event
        line = next(lines, None)
        if line is None:
            raise AssertionError(f"the stream ended after {len(out)} of {want} events: {out}")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            out.append((event, json.loads(line[6:])))
        return out if len(out) >= want else None

    return wait_for(next_line, timeout, lambda: f"{want} events (got {len(out)}: {out})", interval=0)  # type: ignore[return-value]




def test_sse_stream_snapshot_then_live_readings(tmp_path):
    with LiveDaemon(tmp_path) as d:
        d.publish(reading("inv1", T0, {"pv_power_w": 100.0, "battery_soc_pct": 40}))
        assert wait_for(lambda: "inv1" in d.sup.bus.devices)
        with httpx.Client(base_url=d.url, timeout=10) as c, c.stream("GET", "/api/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines) == "retry: 2000"
            assert wait_for(lambda: len(d.sup.bus.listeners) == 1)
            d.publish(reading("inv1", T0 + 10, {"pv_power_w": 2345.0}))
            d.publish(reading("meter", T0 + 11, {"grid_power_w": -5.0}, dtype="meter"))
            d.publish(reading("inv1", T0 + 20, {}, online=False))
            events = read_events(lines, 4)
        assert events[0][0] == "device" and events[0][1]["device_id"] == "inv1"
        assert events[0][1]["metrics"] == {"pv_power_w": 100.0, "battery_soc_pct": 40}
        assert [e for e, _ in events[1:]] == ["reading"] * 3
        assert events[1][1]["metrics"] == {"pv_power_w": 2345.0}
        assert events[2][1]["device_id"] == "meter"
        assert events[3][1]["online"] is False
        # the client went away: the broadcaster forgets it and leaves the bus
        assert wait_for(lambda: not d.sup.bus.listeners)
        assert httpx.get(d.url + "/api/health").json()["sse_clients"] == 0


def test_sse_device_filter(tmp_path):
    with LiveDaemon(tmp_path) as d, httpx.Client(base_url=d.url, timeout=10) as c, \
            c.stream("GET", "/api/events", params={"device": "b"}) as resp:
        assert wait_for(lambda: len(d.sup.bus.listeners) == 1)
        for dev in ("a", "b", "a", "b"):
            d.publish(reading(dev, T0, {"x_w": 1.0}))
        events = read_events(resp, 2)
        assert [p["device_id"] for _, p in events] == ["b", "b"]


def test_shutdown_ends_open_streams_promptly(tmp_path):
    d = LiveDaemon(tmp_path).__enter__()
    c = httpx.Client(base_url=d.url, timeout=10)
    resp = c.send(c.build_request("GET", "/api/events"), stream=True)
    assert wait_for(lambda: len(d.sup.bus.listeners) == 1)
    t = time.monotonic()
    d.stop()
    took = time.monotonic() - t
    resp.close()
    c.close()
    assert not d._thread.is_alive()
    assert took < 10, f"shutdown waited {took:.1f}s on an open event stream"


def test_history_served_from_running_sink(tmp_path):
    with LiveDaemon(tmp_path, sources=[{"type": "synthetic", "interval": 60, "backfill": "1h"}]) as d:
        def got():
            r = httpx.get(d.url + "/api/history", params={"device": "synthetic-home", "metric": "pv_power_w",
                                                           "since": "2h", "step": "60s"})
            return r.status_code == 200 and sum(r.json()["count"]) >= 60

        assert wait_for(got, 15)
        h = httpx.get(d.url + "/api/health").json()
        assert {c["name"] for c in h["components"]} >= {"history", "synthetic"}
        m = httpx.get(d.url + "/metrics").text
        assert 'solarbridge_pv_power_w{device_id="synthetic-home",device_type="synthetic"}' in m


def test_givenergy_demo_with_givtcp_listener(tmp_path):
    demo = pytest.importorskip("solarbridge.sources.givenergy.demo")
    with LiveDaemon(tmp_path, demo_parts=[demo.start], api={"givtcp_listen": "127.0.0.1:0"}) as d:
        assert len(d.urls) == 2 and d.urls[0] != d.urls[1]

        def run_all(base):
            r = httpx.get(base + "/runAll", timeout=5)
            return r.json() if r.status_code == 200 else None

        data = wait_for(lambda: run_all(d.urls[1]), 20)
        assert data, "GivTCP-compatible listener never answered /runAll"
        assert run_all(d.urls[1]) and run_all(d.urls[0])  # served on both listeners
        assert httpx.get(d.urls[1] + "/api/devices").status_code == 404  # the second listener is GivTCP-only
        devs = httpx.get(d.url + "/api/devices").json()
        assert any(x["serial"] == "SA2114G000" or x["device_id"].startswith("SA2114G000") for x in devs)


def test_start_failure_is_one_clear_error(tmp_path):
    with LiveDaemon(tmp_path) as d:
        port = int(d.url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            with LiveDaemon(tmp_path / "b", api={"listen": f"127.0.0.1:{port}"}):
                pass


def test_accepted_connections_have_nodelay():
    # asyncio sets TCP_NODELAY only on connections accepted from a socket with proto IPPROTO_TCP;
    # without it every keep-alive response waited ~40 ms for a delayed ACK (Nagle)
    import socket

    from solarbridge.api.server import bind

    async def go():
        seen = asyncio.get_running_loop().create_future()

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await asyncio.get_running_loop().create_server(P, sock=bind("127.0.0.1", 0))
        _, w = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        flag = await asyncio.wait_for(seen, 5)
        w.close()
        server.close()
        return flag

    assert run(go()) != 0


def test_broadcaster_slow_client_drops_oldest_and_detaches():
    async def go():
        bus = Bus()
        b = Broadcaster(bus, client_queue=3)
        assert bus.listeners == []
        c = b.add()
        assert bus.listeners == [b.on_reading]
        for i in range(5):
            bus.publish(reading("d", T0 + i, {"n": i}))
        frames = await c.next_frames(1)
        assert c.dropped == 2 and len(frames) == 3
        assert [json.loads(f.split(b"data: ")[1])["metrics"]["n"] for f in frames] == [2, 3, 4]
        assert await c.next_frames(0.01) == []  # timeout: keep-alive
        b.remove(c)
        assert bus.listeners == [] and await c.next_frames(0.01) is None
        c2 = b.add()
        b.close()
        assert await c2.next_frames(1) is None and bus.listeners == []
        assert await b.add().next_frames(1) is None  # after close, new clients end at once

    run(go())


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9000", ("::1", 9000)), (":8081", ("0.0.0.0", 8081)),
    ("8082", ("127.0.0.1", 8082)), ("localhost", ("localhost", 8080)), ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_parse_listen(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["", "host:port", "1.2.3.4:70000", "::1:80", "[::1", "[::1]x"])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError, match="api.listen"):
        parse_listen(text)


def test_exposure_warning():
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert exposure_warning("127.0.0.1", 8080, None) == ""
    assert exposure_warning("0.0.0.0", 8080, "tok") == ""
    w = exposure_warning("0.0.0.0", 8080, None)
    assert "NOT loopback" in w and "token" in w


def test_event_loop_not_blocked_by_publish_with_many_clients():
    async def go():
        bus = Bus()
        b = Broadcaster(bus)
        clients = [b.add() for _ in range(100)]
        bus.publish(reading("d", T0, {"pv_power_w": 1.0}))
        got = await asyncio.gather(*(c.next_frames(1) for c in clients))
        assert all(len(f) == 1 for f in got) and b.sent == 1

    run(go())


@given(st.dictionaries(st.text(max_size=10), st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**80, 2**80), st.booleans(), st.text(max_size=10))),
    st.text(max_size=10))
def test_any_reading_encodes_to_one_valid_frame(metrics, device):
    frames = []

    class C:
        device = None

        def put(self, frame):
            frames.append(frame)

    b = Broadcaster(Bus())
    b.clients.add(C())
    b.on_reading(reading(device, T0, metrics))
    (frame,) = frames
    assert frame.endswith(b"\n\n") and frame.count(b"\n\n") == 1
    data = json.loads(frame.split(b"data: ", 1)[1])  # strict JSON: NaN/inf became null
    assert data["device_id"] == device and set(data["metrics"]) == set(metrics)


def test_requests_during_a_burst_of_new_devices(tmp_path):
    """Device registry and SSE clients change while requests read them: never a 500."""
    with LiveDaemon(tmp_path, history=False) as d:
        done = []

        async def burst():
            i, end = 0, time.monotonic() + 1.5
            while time.monotonic() < end:
                d.sup.bus.publish(reading(f"dev{i}", T0 + i, {"pv_power_w": float(i), f"m{i % 50}_w": 1.0}))
                i += 1
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
            done.append(i)

        d.call(lambda: asyncio.ensure_future(burst()))
        statuses = []
        with httpx.Client(base_url=d.url, timeout=10) as c:
            while not done:
                for path in ("/api/devices", "/metrics", "/api/health"):
                    statuses.append(c.get(path).status_code)
                with c.stream("GET", "/api/events") as resp:
                    statuses.append(resp.status_code)
                    next(resp.iter_lines())
        assert len(statuses) > 8 and set(statuses) == {200}
        assert len(httpx.get(d.url + "/api/devices").json()) == done[0]
