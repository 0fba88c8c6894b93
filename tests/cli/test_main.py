"""The `solarbridge` command as a user runs it: start-up imports, run + SIGTERM, history query."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from servers import wait_for
from support.paths import REPO

SRC = str(REPO / "src")
ENV = {**os.environ, "PYTHONPATH": SRC}


def test_help_imports_no_device_or_server_libraries():
    code = ("import sys\nfrom solarbridge.cli.main import build_parser\nbuild_parser().format_help()\n"
            "heavy = [m for m in ('pydantic', 'httpx', 'paho', 'fastapi', 'uvicorn', 'dpkt', 'serial',"
            " 'cryptography', 'sqlite3', 'asyncio', 'solarbridge.runtime', 'solarbridge.sources.givenergy')"
            " if m in sys.modules]\nprint(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    assert out.stdout.strip() == "[]"


def test_version():
    out = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "--version"], capture_output=True,
                         text=True, env=ENV)
    assert out.returncode == 0 and out.stdout.startswith("solarbridge 0.")


def test_run_sigterm_flushes_and_exits_quickly(tmp_path):
    cfg = tmp_path / "sb.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp_path}"
[[sources]]
type = "synthetic"
interval = 0.05
[[sinks]]
type = "state"
min_interval = 60
[[sinks]]
type = "jsonl"
""")
    proc = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "run", "-c", str(cfg), "-v"],
                            env=ENV, stderr=subprocess.PIPE, text=True)
    jsonl = tmp_path / "readings.jsonl"
    wait_for(lambda: jsonl.exists() and jsonl.stat().st_size > 0, 20, "the daemon to write readings.jsonl",
             stop_if=lambda: proc.poll() is not None and f"the daemon exited {proc.returncode}: {proc.stderr.read()}")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(15)
    took = time.monotonic() - t0
    assert rc == 0, proc.stderr.read()
    assert took < 10
    # the state sink was rate-limited to one write a minute: the final flush still wrote the latest values
    state = json.loads((tmp_path / "state.json").read_text())
    last = [r for r in map(json.loads, jsonl.read_text().splitlines()) if r["device_id"] == "synthetic-home"][-1]
    assert state["devices"]["synthetic-home"]["metrics"]["pv_energy_total_wh"] == \
        last["metrics"]["pv_energy_total_wh"]
    # the default history store was added and written
    hist = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "history", "--db",
                           str(tmp_path / "history.sqlite"), "--device", "synthetic-home", "--metric",
                           "battery_soc_pct", "--since", "1h", "--format", "json"], capture_output=True, text=True,
                          env=ENV)
    assert hist.returncode == 0, hist.stderr
    rows = json.loads(hist.stdout)
    assert len(rows) == sum('"device_id":"synthetic-home"' in line for line in jsonl.read_text().splitlines())


def test_history_bad_since_is_a_usage_error(tmp_path):
    from solarbridge.sinks.history.sink import HistoryStore

    HistoryStore(tmp_path / "h.sqlite").close()
    out = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "history", "--db", str(tmp_path / "h.sqlite"),
                          "--device", "x", "--metric", "y", "--since", "yesterday-ish"], capture_output=True,
                         text=True, env=ENV)
    assert out.returncode == 2
    assert "not a time: 'yesterday-ish'" in out.stderr and "Traceback" not in out.stderr


def test_demo_runs_and_writes_history(tmp_path):
    out = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "demo", "--no-api", "--duration", "3",
                          "--dir", str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "demo stopped cleanly." in out.stdout
    from solarbridge.sinks.history.sink import HistoryStore

    store = HistoryStore(tmp_path / "history.sqlite", readonly=True)
    assert {"device_id": "synthetic-home", "device_type": "synthetic", "metric": "pv_power_w"} in store.series()


def test_demo_ctrl_c_stops_cleanly_with_json_logs(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "demo", "--no-api", "--dir", str(tmp_path),
                             "-v", "--log-format", "json"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    state = tmp_path / "state.json"
    wait_for(state.exists, 60, "the demo to write its state file",
             stop_if=lambda: proc.poll() is not None and f"the demo exited {proc.returncode}: {proc.stderr.read()}")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Press Ctrl-C to stop." in out and out.rstrip().endswith("demo stopped cleanly.")
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(rec["msg"] == "stopping" and rec["level"] == "info" for rec in logs)
