"""Issue 17 item 1 for the Home Assistant REST sink: a state is delivered when Home Assistant answered 2xx;
a run that ends delivers every state it took, or names what Home Assistant did not accept and exits 1.

There is no Debian Home Assistant package, so the peer is a small local HTTP server that answers like HA's
``POST /api/states/<entity_id>`` (201 with the bearer token, 401 without), as the sink's other test does.
Readings come from the real Sunsynk report in tests/data (battery SOC 54 %, grid 233.3 V by its oracle)
through the daemon's own runtime, and from the GivEnergy simulator through ``givtcp-read`` (HA_OUTPUT).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from servers import free_port
from solarbridge.config import build
from solarbridge.runtime import Supervisor
from support.givenergy import simulator
from support.sunsynk import DERIVED_PCAP

SERIAL = "1235687108"
TOKEN = "ha-long-lived"


class FakeHA:
    """``POST /api/states/sensor.*`` with the bearer token -> 201 and the state is kept (else 401/404/503)."""

    def __init__(self, port: int = 0) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.answer = 201
        ha = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code = ha.answer
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    code = 401
                elif not self.path.startswith("/api/states/sensor."):
                    code = 404
                if code == 201:
                    ha.states[self.path.removeprefix("/api/states/")] = json.loads(body)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(5)


def _supervisor(tmp_path: Path, url: str) -> Supervisor:
    return Supervisor(build({
        "daemon": {"state_dir": str(tmp_path / "state"), "history": False},
        "sources": [{"type": "sunsynk_capture", "name": "sunsynk", "device": str(DERIVED_PCAP), "file": True,
                     "timezone": "Africa/Johannesburg"}],
        "sinks": [{"type": "ha_rest", "name": "ha", "url": url, "token": TOKEN, "prefix": "sb"}],
    }))


def _finite_run(sup: Supervisor, timeout: float, during_drain: Any = None) -> dict[str, str]:
    async def run() -> dict[str, str]:
        sup.build()
        await sup.start()
        await sup.wait_sources()
        if during_drain is not None:
            asyncio.get_running_loop().call_later(1.0, during_drain)
        return await sup.stop(deliver=True, timeout=timeout)

    return asyncio.run(run())


def _soc(states: dict[str, dict[str, Any]]) -> Any:
    return states[f"sensor.sb_{SERIAL}_battery_soc_pct"]


def test_finite_run_delivers_every_state(tmp_path: Path) -> None:
    ha = FakeHA()
    try:
        sup = _supervisor(tmp_path, ha.url)
        assert _finite_run(sup, 30) == {}
    finally:
        ha.close()
    assert _soc(ha.states)["state"] == 54
    assert _soc(ha.states)["attributes"]["unit_of_measurement"] == "%"
    assert ha.states[f"sensor.sb_{SERIAL}_grid_voltage_v"]["state"] == 233.3
    assert sup.sinks["ha"].pending() == 0
    assert sup.health["ha"].counters["states_posted"] >= len(ha.states)


def test_finite_run_ha_down_names_the_undelivered_states(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here
    sup = _supervisor(tmp_path, f"http://127.0.0.1:{dead}")
    undelivered = _finite_run(sup, 3)
    assert set(undelivered) == {"ha"}
    text = undelivered["ha"]
    m = re.fullmatch(rf"(\d+) state\(s\) of \d+ device\(s\) not accepted by Home Assistant at "
                     rf"http://127\.0\.0\.1:{dead} \(cannot reach Home Assistant at [^)]*ConnectError[^)]*\): (.*)",
                     text)
    assert m, text
    held = int(m.group(1))
    assert held == sup.sinks["ha"].pending() > 5
    names = m.group(2).split(", ")
    assert names[-1].endswith(f"and {held - 5} more")
    assert names[0].startswith(f"sensor.sb_{SERIAL}_") and all(n.startswith("sensor.sb_") for n in names)
    assert "queued reading(s) not taken" not in text  # the sink took them: counted once, by the sink


def test_finite_run_ha_answering_503_at_the_end_is_not_delivered(tmp_path: Path) -> None:
    ha = FakeHA()
    ha.answer = 503
    try:
        sup = _supervisor(tmp_path, ha.url)
        undelivered = _finite_run(sup, 3)
    finally:
        ha.close()
    assert "Home Assistant answered 503" in undelivered["ha"]
    assert ha.states == {}


def test_finite_run_waits_for_ha_to_return(tmp_path: Path) -> None:
    """HA down when the source ends, back during the drain: everything is delivered, nothing is reported."""
    port = free_port()
    started: list[FakeHA] = []
    sup = _supervisor(tmp_path, f"http://127.0.0.1:{port}")
    try:
        assert _finite_run(sup, 30, during_drain=lambda: started.append(FakeHA(port))) == {}
    finally:
        for ha in started:
            ha.close()
    assert started and _soc(started[0].states)["state"] == 54


@pytest.mark.parametrize("up", [True, False])
def test_givtcp_read_ha_output_exit_code(tmp_path: Path, up: bool) -> None:
    """HA_OUTPUT=True: exit 0 when HA took every state; exit 1 naming the states when HA is down."""
    ha = FakeHA() if up else None
    url = ha.url if ha else f"http://127.0.0.1:{free_port()}"

    async def go() -> tuple[int, bytes, bytes, str, float]:
        async with simulator() as sim:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INVERTOR", "GIVTCP", "HA_"))}
            env.update(INVERTOR_IP="127.0.0.1", INVERTOR_PORT=str(sim.port), HA_OUTPUT="True", HA_URL=url,
                       HA_TOKEN=TOKEN, CACHELOCATION=str(tmp_path))
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "givtcp-read"), env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out, err, sim.inverter.serial.lower(), sim.inverter.soc

    try:
        rc, out, err, serial, soc = asyncio.run(go())
    finally:
        if ha is not None:
            ha.close()
    assert json.loads(out)["Control"]["Target SOC"] == 100  # the read itself worked either way
    if up:
        assert rc == 0, err.decode()
        # the simulated battery's charge, as the simulator holds it
        assert ha is not None and ha.states[f"sensor.givtcp_{serial}_battery_soc_pct"]["state"] == round(soc)
    else:
        assert rc == 1
        line = next(x for x in err.decode().splitlines() if "not delivered" in x)
        assert line.startswith("output failed: givtcp-ha: not delivered: ")
        assert "not accepted by Home Assistant at " + url in line
        assert f"sensor.givtcp_{serial}_" in line
        assert "Traceback" not in err.decode()


def test_daemon_run_duration_ha_down_exits_1_naming_the_states(tmp_path: Path) -> None:
    """`solarbridge run --duration`: a finite daemon run; HA down at the end -> exit 1, the sink's states named."""
    dead = free_port()
    cfg = tmp_path / "sb.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp_path / 'state'}"
history = false
shutdown_timeout = 2
[[sources]]
type = "synthetic"
name = "home"
device_id = "home1"
interval = 0.5
persist = false
[[sinks]]
type = "ha_rest"
name = "ha"
url = "http://127.0.0.1:{dead}"
token = "{TOKEN}"
""")
    cfg.chmod(0o600)
    p = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "run", "-c", str(cfg), "--duration", "1"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")})
    assert p.returncode == 1, p.stderr
    line = next(x for x in p.stderr.splitlines() if "not delivered" in x)
    assert "not delivered: sink ha: " in line
    assert f"not accepted by Home Assistant at http://127.0.0.1:{dead}" in line
    assert "sensor.givtcp_home1_" in line
    assert "Traceback" not in p.stderr
