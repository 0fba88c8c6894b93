"""SIGTERM to a real `solarbridge run` while the simulated inverter is connected over TCP: a clean stop,
no asyncio callback error and no CancelledError trace on stderr (issue 17 item 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from servers import free_port, wait_for


def test_sigterm_with_an_inverter_connected_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "sb.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp_path / 'state'}"
history = false
[api]
enabled = false
[[sources]]
type = "solaredge"
mode = "network"
listen = "127.0.0.1"
ports = [{port}]
[[sinks]]
type = "jsonl"
path = "readings.jsonl"
""")
    cfg.chmod(0o600)
    out = tmp_path / "state" / "readings.jsonl"
    daemon = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "run", "-c", str(cfg)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sim = None
    try:
        sim = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.solaredge.simulator", "--connect",
                                f"127.0.0.1:{port}", "--interval", "0.3", "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the simulator retries until the daemon listens; readings arriving means it is connected
        wait_for(lambda: out.exists() and out.stat().st_size > 0, 30, what="readings from the simulator")
        assert sim.poll() is None
        daemon.send_signal(signal.SIGTERM)
        _stdout, stderr = daemon.communicate(timeout=30)
    finally:
        for p in (daemon, sim):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    assert daemon.returncode == 0, stderr
    for bad in ("Traceback", "CancelledError", "Exception in callback", "ERROR"):
        assert bad not in stderr, stderr
    assert "stopped" in stderr
