"""Three identical workers, one config, 60 simulated GivEnergy inverters: every device is polled by exactly one
worker, by the workers' history stores and by the broker's retained state."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import servers
from support.fleet import Retained, read_retained

pytestmark = pytest.mark.servers

DEVICES = 60
WORKERS = 3
SRC = str(Path(__file__).parents[2] / "src")


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": SRC, **(env or {})})


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _history_devices(db: Path) -> dict[str, int]:
    """device_id -> samples of its SOC in one worker's history store."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT s.device_id, COUNT(*) FROM series s JOIN samples x ON x.series = s.id"
                           " WHERE s.metric = 'battery_soc_pct' GROUP BY s.device_id").fetchall()
    finally:
        con.close()
    return dict(rows)


def test_three_workers_cover_sixty_devices_exactly_once(mosquitto, tmp_path, monkeypatch):
    procs: list[subprocess.Popen[bytes]] = []
    # everything published while the workers run: a device's discovery from two workers would show here
    watcher = Retained(mosquitto.port, ("homeassistant/#",), qos=0)
    try:
        sim_log = tmp_path / "sim.log"
        sim = _spawn(["simulate", "givenergy", "--port", "0", "--count", str(DEVICES), "--batteries", "1"], sim_log)
        procs.append(sim)
        ports = servers.wait_for(
            lambda: (p := re.findall(r"givenergy simulator (\S+) .* listening on 127\.0\.0\.1:(\d+)",
                                     sim_log.read_text())) and len(p) == DEVICES and p,
            30, what=f"{DEVICES} simulated inverters")
        serials = {serial for serial, _ in ports}
        assert len(serials) == DEVICES
        (tmp_path / "fleet.csv").write_text("family,host,port,serial,site\n" + "".join(
            f"givenergy,127.0.0.1,{port},{serial},site-{i % 7}\n" for i, (serial, port) in enumerate(ports)))
        cfg = tmp_path / "sb.toml"
        # one config for every worker; only SOLARBRIDGE_SHARD and the state directory differ
        cfg.write_text(f"""
[daemon]
shutdown_timeout = 5
[inventory]
file = "fleet.csv"
[inventory.defaults.givenergy]
poll_interval = 1
full_refresh_interval = 3600
timeout = 3
request_gap = 0
[[sinks]]
type = "mqtt"
url = "{mosquitto.url}"
heartbeat = 0
per_metric_topics = false
""")
        cfg.chmod(0o600)
        for k in range(WORKERS):
            (tmp_path / f"w{k}").mkdir()
            procs.append(_spawn(["run", "-c", str(cfg)], tmp_path / f"w{k}.log",
                                {"SOLARBRIDGE_SHARD": f"{k}/{WORKERS}", "SOLARBRIDGE_STATE_DIR": str(tmp_path / f"w{k}")}))

        def retained_states() -> dict[str, bytes]:
            return read_retained(mosquitto.port, ("solarbridge/+/state", "solarbridge/status/+"), settle=0.5)

        def all_up() -> dict[str, bytes] | None:
            for p in procs:
                assert p.poll() is None, "a process exited: " + "".join(
                    f.read_text()[-2000:] for f in tmp_path.glob("*.log"))
            st = retained_states()
            have = {t.split("/")[1] for t in st if t.endswith("/state")}
            return st if have >= serials and all(st.get(f"solarbridge/status/{k}") == b"online"
                                                 for k in range(WORKERS)) else None

        state = servers.wait_for(all_up, 60, interval=0.5, what="every inverter's state on the broker")
        time.sleep(2)  # a few more polls on every worker
        for p in procs[1:]:
            _stop(p)
        state = read_retained(mosquitto.port, settle=1.0)
    finally:
        for p in procs:
            _stop(p)
        watcher.close()

    # by the history: each worker stored its own devices, no device is in two stores, none is missing
    stored = {k: _history_devices(tmp_path / f"w{k}" / "history.sqlite") for k in range(WORKERS)}
    held = {k: {d: n for d, n in v.items() if not d.startswith("site:")} for k, v in stored.items()}
    # the inventory's site labels: each site is whole on one worker, which publishes it
    site_of = {k: {d for d in v if d.startswith("site:")} for k, v in stored.items()}
    assert sorted(set().union(*site_of.values())) == [f"site:site-{i}" for i in range(7)]
    assert sum(len(v) for v in site_of.values()) == 7
    for a in range(WORKERS):
        for b in range(a + 1, WORKERS):
            assert not set(held[a]) & set(held[b]), f"workers {a} and {b} both polled {set(held[a]) & set(held[b])}"
    assert set().union(*held.values()) == serials
    assert all(held[k] for k in range(WORKERS)), {k: len(v) for k, v in held.items()}
    assert all(n >= 2 for v in held.values() for n in v.values())  # polled repeatedly, by that worker alone

    # by the broker: every device's retained discovery names the status topic of the worker whose history has it
    owner = {dev: k for k, devs in held.items() for dev in devs}
    for dev in serials:
        assert json.loads(state[f"solarbridge/{dev}/state"])["battery_soc_pct"] is not None
        configs = [json.loads(v) for t, v in state.items()
                   if t.startswith("homeassistant/") and t.endswith("/config") and f"/solarbridge_{dev}/" in t]
        assert configs, dev
        assert {c["availability"][0]["topic"] for c in configs} == {f"solarbridge/status/{owner[dev]}"}
    assert {state[f"solarbridge/status/{k}"] for k in range(WORKERS)} == {b"offline"}  # clean stops said so
    published: dict[str, set[str]] = {}
    for topic, payload in watcher.every:
        if topic.endswith("/config") and payload:
            node = topic.split("/")[2].removeprefix("solarbridge_")
            published.setdefault(node, set()).add(json.loads(payload)["availability"][0]["topic"])
    assert set(published) == serials | {f"site_site-{i}" for i in range(7)}
    assert {dev: topics for dev, topics in published.items() if len(topics) != 1} == {}
