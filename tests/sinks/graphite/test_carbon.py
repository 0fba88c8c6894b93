"""se2graphite, pickle2graphite and the graphite sink against a REAL carbon-cache (Debian graphite-carbon).

Values are read back from the whisper files. The storage schema keeps 1 s points for an hour, so the
inputs are moved to the last half hour: the golden input's Date/Time fields are shifted by a whole
number of seconds, and the expected points are the golden file's lines shifted by the same amount.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from servers import finish, wait_for
from solarbridge.cli import pickle2graphite, se2graphite
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.sinks.graphite.sink import GraphiteConfig, GraphiteSink
from solarbridge.sinks.graphite.wire import Point, decode_text
from support.convtools import DATA

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

T0 = 1_781_000_000  # first record time in simulated.json
KEEP = ("inverters.7F104920.", "optimizers.2010000")  # one inverter and its three optimizers: ~35 series


def _shift_record(rec: dict, delta: int) -> None:
    ts = datetime.fromisoformat(f"{rec['Date']}T{rec['Time']}+00:00") + timedelta(seconds=delta)
    rec["Date"], rec["Time"] = ts.strftime("%Y-%m-%d"), ts.strftime("%H:%M:%S")


def recent_input(tmp_path: Path) -> tuple[Path, list[Point]]:
    """simulated.json cut to a few devices and shifted to the last half hour, and the points expected."""
    delta = int(time.time()) - 1800 - T0
    lines = []
    for text in (DATA / "simulated.json").read_text().splitlines():
        obj = json.loads(text)
        obj = {"events": {}, "inverters": {k: v for k, v in obj["inverters"].items() if k == "7F104920"},
               "optimizers": {k: v for k, v in obj["optimizers"].items() if k.startswith("2010000")}}
        for group in ("inverters", "optimizers"):
            for rec in obj[group].values():
                _shift_record(rec, delta)
        lines.append(json.dumps(obj, sort_keys=True))
    path = tmp_path / "recent.json"
    path.write_text("\n".join(lines) + "\n")
    golden = decode_text((DATA / "golden" / "simulated.graphite.txt").read_bytes()).points
    expected = [(p, ts + delta, v) for p, ts, v in golden if p.removeprefix("solar.").startswith(KEEP)]
    assert len(expected) > 150
    return path, expected


def assert_stored(carbon, expected: list[Point], timeout: float = 30.0) -> None:
    """Every expected point is in whisper with exactly its value at exactly its timestamp."""
    by_path: dict[str, dict[int, float]] = {}
    for p, ts, v in expected:
        by_path.setdefault(p, {})[int(ts)] = v
    since = int(min(ts for _, ts, _ in expected)) - 10

    def missing() -> list[str]:
        out = []
        for path, want in by_path.items():
            got = dict(carbon.fetch(path, since))
            out += [f"{path}@{ts}: want {v!r}, got {got.get(ts)!r}" for ts, v in want.items() if got.get(ts) != v]
        return out

    wait_for(lambda: not missing(), timeout, lambda: f"every point in whisper; {len(m := missing())} point(s) "
             f"missing or wrong, e.g. {m[:5]}", interval=0.3)


@pytest.mark.parametrize("tool", ["se2graphite", "pickle2graphite"])
def test_tool_stores_exact_values_at_exact_timestamps(tool, carbon, tmp_path, capsys):
    src, expected = recent_input(tmp_path)
    port = carbon.line_port if tool == "se2graphite" else carbon.pickle_port
    main = se2graphite.main if tool == "se2graphite" else pickle2graphite.main
    rc = main(["-b", "solar", "-h", "127.0.0.1", "-p", str(port), "--delay", "0", "--tz", "UTC", str(src)])
    assert rc == 0, capsys.readouterr().err
    assert_stored(carbon, expected)
    # nothing but the expected series was created (names exactly as the original builds them)
    created = {".".join(p.relative_to(carbon.storage).with_suffix("").parts) for p in carbon.storage.rglob("*.wsp")}
    assert created == {p for p, _, _ in expected}


@pytest.mark.parametrize("tool", ["se2graphite", "pickle2graphite"])
def test_tool_loses_nothing_when_carbon_restarts_mid_send(tool, carbon, tmp_path):
    src, expected = recent_input(tmp_path)
    port = carbon.line_port if tool == "se2graphite" else carbon.pickle_port
    main = se2graphite.main if tool == "se2graphite" else pickle2graphite.main
    # pacing stretches the send over ~4 s so the restart lands in the middle of it
    delay = "0.02" if tool == "se2graphite" else "0.7"
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(main([
        "-b", "solar", "-h", "127.0.0.1", "-p", str(port), "--delay", delay, "--tz", "UTC", "--retry-for", "60",
        str(src)])))
    t.start()
    # let part of the input go out, then restart Carbon on the same ports
    time.sleep(1.0)
    assert t.is_alive(), "the send finished before the restart; the test would prove nothing"
    carbon.stop()
    time.sleep(0.5)
    carbon.start()
    t.join(90)
    assert not t.is_alive() and result == [0]
    assert_stored(carbon, expected)


# ----------------------------------------------------------------------------- daemon sink


def _readings(n: int, base_ts: int) -> list[Reading]:
    out = []
    for i in range(n):
        out.append(Reading(device_id="INV 1.a", device_type="inverter",
                           timestamp=datetime.fromtimestamp(base_ts + i, UTC),
                           metrics={"pv_power_w": 1000.0 + i, "grid_available": True, "mode": "MPPT",
                                    "pv_energy_total_wh": 5_000_000 + i},
                           source="se"))
    return out


def _sink(carbon, protocol: str, tmp_path: Path, spool: str = "disk") -> GraphiteSink:
    port = carbon.line_port if protocol == "text" else carbon.pickle_port
    cfg = GraphiteConfig(type="graphite", name="g", host="127.0.0.1", port=port, protocol=protocol, prefix="sb",
                         timeout=5, spool=spool)
    return GraphiteSink(cfg, Context.standalone("g", "sink", "graphite", tmp_path))


def _sink_expected(readings: list[Reading]) -> list[Point]:
    out = []
    for r in readings:
        ts = int(r.timestamp.timestamp())
        out += [("sb.inverter.INV_1_a.pv_power_w", ts, r.metrics["pv_power_w"]),
                ("sb.inverter.INV_1_a.grid_available", ts, 1.0),
                ("sb.inverter.INV_1_a.pv_energy_total_wh", ts, float(r.metrics["pv_energy_total_wh"]))]
    return out


@pytest.mark.parametrize(("protocol", "spool"), [("text", "memory"), ("pickle", "disk")])
def test_sink_writes_any_source_readings(protocol, spool, carbon, tmp_path):
    readings = _readings(20, int(time.time()) - 600)
    sink = _sink(carbon, protocol, tmp_path, spool)

    async def go() -> int:
        await sink.start()
        await sink.write(readings[:10])
        await sink.write(readings[10:])
        await sink.flush()
        pending = sink.pending()
        await sink.stop()
        return pending

    assert asyncio.run(go()) == 0
    assert_stored(carbon, _sink_expected(readings))
    assert not carbon.wsp_path("sb.inverter.INV_1_a.mode").exists()  # strings are not sent


@pytest.mark.parametrize(("protocol", "spool"), [("text", "memory"), ("pickle", "memory"), ("pickle", "disk")])
def test_sink_in_daemon_loses_nothing_across_carbon_restart(protocol, spool, carbon, tmp_path):
    """Readings published through the real runtime while Carbon restarts all end up in whisper."""
    from solarbridge import config as cfgmod
    from solarbridge.runtime import Supervisor

    port = carbon.line_port if protocol == "text" else carbon.pickle_port
    cfg = cfgmod.build({"daemon": {"state_dir": str(tmp_path), "history": False, "backoff_initial": 0.1,
                                   "backoff_cap": 0.5},
                        "sinks": [{"type": "graphite", "port": port, "protocol": protocol, "prefix": "sb",
                                   "timeout": 5, "batch_size": 5, "spool": spool}]})
    readings = _readings(60, int(time.time()) - 900)

    async def go() -> None:
        sup = Supervisor(cfg)
        sup.build()
        await sup.start()
        for i, r in enumerate(readings):
            sup.bus.publish(r)
            await asyncio.sleep(0.02)
            if i == 20:
                await asyncio.to_thread(carbon.stop)
            if i == 35:
                await asyncio.to_thread(carbon.start)
        assert await sup.drain(30)
        await sup.stop()

    asyncio.run(go())
    assert_stored(carbon, _sink_expected(readings))


def test_disk_spool_keeps_data_across_a_daemon_restart_while_carbon_is_down(carbon, tmp_path):
    """Carbon down: the daemon stops with data undelivered; the next daemon run delivers it from disk."""
    readings = _readings(30, int(time.time()) - 300)
    carbon.stop()

    async def first_run() -> int:
        sink = _sink(carbon, "text", tmp_path)
        await sink.start()
        await sink.write(readings)  # never raises: the spool has it
        await sink.flush()  # Carbon is down: logged, data stays on disk
        pending = sink.pending()
        await sink.stop()
        return pending

    assert asyncio.run(first_run()) == 3 * len(readings)
    carbon.start()

    async def second_run() -> int:
        sink = _sink(carbon, "text", tmp_path)
        await sink.start()
        await sink.flush()
        pending = sink.pending()
        await sink.stop()
        return pending

    assert asyncio.run(second_run()) == 0
    assert_stored(carbon, _sink_expected(readings))


def test_follow_mode_sends_lines_as_they_are_appended(carbon, tmp_path):
    import signal
    import subprocess
    import sys

    src, expected = recent_input(tmp_path)
    lines = src.read_text().splitlines(True)
    live = tmp_path / "live.json"
    live.write_text(lines[0])
    proc = subprocess.Popen([str(Path(sys.executable).parent / "pickle2graphite"), "-f", "--delay", "0", "-b", "solar",
                             "-h", "127.0.0.1", "-p", str(carbon.pickle_port), "--tz", "UTC", str(live)],
                            stderr=subprocess.PIPE)
    try:
        first_ts = min(ts for _, ts, _ in expected)
        assert_stored(carbon, [p for p in expected if p[1] == first_ts])
        with live.open("a") as f:
            f.writelines(lines[1:])
        assert_stored(carbon, expected)
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = finish(proc, 10)  # killed if it does not stop
    assert proc.returncode == 130 and b"Traceback" not in err


def test_client_counts_only_real_reconnects_and_confirms_by_half_close(carbon):
    from solarbridge.sinks.graphite.sink import GraphiteClient

    ts = int(time.time()) - 120
    client = GraphiteClient("127.0.0.1", carbon.line_port, timeout=5, status=lambda _m: None)
    client.send(f"c.a 1 {ts}\n".encode(), 1)
    client.confirm()
    assert client.unconfirmed() == 0 and client.sock is None  # confirmed: Carbon closed its side
    client.send(f"c.a 2 {ts + 1}\n".encode(), 1)  # a planned new connection, not a reconnect
    assert client.reconnects == 0 and client.connects == 2
    carbon.stop()
    carbon.start()
    client.send(f"c.a 3 {ts + 2}\n".encode(), 1)  # the old connection is dead: detected before writing
    client.close()
    assert client.reconnects == 1
    assert_stored(carbon, [("c.a", ts, 1.0), ("c.a", ts + 1, 2.0), ("c.a", ts + 2, 3.0)])
