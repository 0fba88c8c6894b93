"""The real `solarbridge run` daemon from a TOML config: synthetic source -> mqtt + influxdb2, kill -9, restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from servers import wait_for

pytestmark = pytest.mark.servers

SOLARBRIDGE = [sys.executable, "-m", "solarbridge.cli.main"]


def write_config(path: Path, state: Path, mqtt_url: str, influx_url: str) -> None:
    path.write_text(f"""
[daemon]
state_dir = "{state}"
history = false

[[sources]]
type = "synthetic"
interval = 0.2

[[sinks]]
type = "mqtt"
url = "{mqtt_url}"
keepalive = 5

[[sinks]]
type = "influxdb2"
host = "{influx_url}"
org = "home"
bucket = "solar"
token = "not-checked-by-victoria"
flush_interval = 0.1
""")
    path.chmod(0o600)


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(SOLARBRIDGE + ["run", "-c", str(cfg)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_daemon_last_will_and_spool_across_kill_9(mosquitto, victoria, tmp_path, collector_factory):
    cfg = tmp_path / "solarbridge.toml"
    write_config(cfg, tmp_path / "state", mosquitto.url, victoria.url)
    col = collector_factory(mosquitto.port)
    log = tmp_path / "daemon.log"
    proc = start(cfg, log)
    try:
        col.wait_topic("solarbridge/status", 20, lambda m: m.payload == b"online")
        state = json.loads(col.wait_topic("solarbridge/synthetic-home/state", 10).payload)
        assert "pv_power_w" in state and "battery_soc_pct" in state
        col.wait_topic("homeassistant/sensor/solarbridge_synthetic-home/solarbridge_synthetic-home_pv_power_w/config",
                       10)
        victoria.wait_series('{__name__="synthetic_pv_power_w",device_id="synthetic-home"}', timeout=15)
        col.clear()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        # the broker publishes the daemon's last will
        col.wait_topic("solarbridge/status", 10, lambda m: m.payload == b"offline")

        # with the database down, a restarted daemon keeps spooling on disk
        victoria.stop()
        proc = start(cfg, log)
        col.wait_topic("solarbridge/status", 20, lambda m: m.payload == b"online")

        def spooled() -> int:
            files = list((tmp_path / "state" / "spool").glob("*.influx.sqlite"))
            if not files:
                return 0
            with sqlite3.connect(files[0]) as db:
                return db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

        wait_for(spooled, 20, "readings spooled while the database is down", interval=0.1,
                 ignore=(sqlite3.OperationalError,))  # its table not made yet
        os.kill(proc.pid, signal.SIGTERM)  # clean stop: says offline, spool stays on disk
        proc.wait(15)
        col.wait_topic("solarbridge/status", 10, lambda m: m.payload == b"offline")
        (spool,) = (tmp_path / "state" / "spool").glob("*.influx.sqlite")  # named after the sink
        assert oct(spool.stat().st_mode & 0o777) == "0o600"
        with sqlite3.connect(spool) as db:
            waiting = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        assert waiting > 0

        # database back, daemon back: the backlog drains
        victoria.start()
        proc = start(cfg, log)

        def drained() -> bool:
            with sqlite3.connect(spool) as db:
                return db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0

        wait_for(drained, 20, lambda: "the spool to drain; daemon log:\n" + log.read_text()[-3000:], interval=0.1,
                 stop_if=lambda: proc.poll() is not None
                 and f"the daemon exited {proc.returncode}; log:\n" + log.read_text()[-3000:])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
