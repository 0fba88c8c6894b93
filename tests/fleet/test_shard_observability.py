"""Issue 18 item 2, "/metrics and health carry the shard": a real `solarbridge run` worker started with
SOLARBRIDGE_SHARD=1/3 says so in /api/health and in /metrics.

/metrics is parsed with prometheus_client's own text parser (the reference implementation of the format
Prometheus scrapes), not with our renderer. How many sources the worker runs is checked against the
devices it actually serves, so the figure is not only the renderer's own number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from servers import free_port, wait_for
from solarbridge.fleet.shard import owner
from support.api import client_for, make_supervisor, run
from support.paths import SRC
from support.prom import samples

SOURCES = 9



def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "worker.toml"
    cfg.write_text("[daemon]\nhistory = false\nshutdown_timeout = 3\n[api]\nenabled = true\n" + "".join(
        f'[[sources]]\ntype = "synthetic"\nname = "s{i}"\ndevice_id = "dev-{i}"\ninterval = 0.5\npersist = false\n'
        for i in range(SOURCES)))
    return cfg


def test_sharded_worker_reports_its_shard_in_health_and_metrics(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(SRC), "SOLARBRIDGE_SHARD": "1/3",
           "SOLARBRIDGE_STATE_DIR": str(tmp_path / "state"), "SOLARBRIDGE_API_LISTEN": f"127.0.0.1:{port}"}
    # which sources worker 1 of 3 should run; the worker must serve exactly their devices
    mine = {f"dev-{i}" for i in range(SOURCES) if owner(f"source:s{i}", 3) == 1}
    assert 0 < len(mine) < SOURCES  # a real share: neither nothing nor everything
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "run", "-c", str(_config(tmp_path))],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def health() -> dict | None:
            assert proc.poll() is None, "worker exited: " + log.read_text()[-2000:]
            try:
                h = httpx.get(base + "/api/health", timeout=2).json()
            except httpx.HTTPError:
                return None
            return h if h["devices"] >= len(mine) else None

        h = wait_for(health, 30, what="the worker's health with every device of its shard")
        assert h["shard"] == "1/3"
        s = samples(httpx.get(base + "/metrics", timeout=5).text)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert s[("solarbridge_daemon_shard", (("count", "3"), ("index", "1"), ("shard", "1/3")))] == 1
    assert [k for k in s if k[0] == "solarbridge_daemon_shard"] == [
        ("solarbridge_daemon_shard", (("count", "3"), ("index", "1"), ("shard", "1/3")))]
    served = {dict(labels)["device_id"] for name, labels in s if name == "solarbridge_device_online"}
    assert served == mine
    assert s[("solarbridge_daemon_shard_sources", ())] == len(mine)


def test_unsharded_daemon_says_no_shard(tmp_path: Path, monkeypatch) -> None:
    """Without a shard: health says null and /metrics has no shard family (the assertions above can fail)."""
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    sup = make_supervisor(tmp_path)

    async def go() -> tuple[dict, str]:
        from solarbridge.api.app import create_app

        async with client_for(create_app(sup)) as c:
            return (await c.get("/api/health")).json(), (await c.get("/metrics")).text

    h, text = run(go())
    assert h["shard"] is None
    assert not any(name.startswith("solarbridge_daemon_shard") for name, _ in samples(text))


def test_daemon_shard_from_the_config_key(tmp_path: Path, monkeypatch) -> None:
    """``[daemon] shard = "2/4"`` (no environment): the same two places carry it."""
    from solarbridge.api.app import create_app
    from solarbridge.config import build
    from solarbridge.runtime import Supervisor

    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    sources = [{"type": "synthetic", "name": f"s{i}", "device_id": f"dev-{i}", "persist": False}
               for i in range(SOURCES)]
    sup = Supervisor(build({"daemon": {"state_dir": str(tmp_path), "history": False, "shard": "2/4"},
                            "sources": sources}))
    sup.build()
    mine = sum(1 for i in range(SOURCES) if owner(f"source:s{i}", 4) == 2)

    async def go() -> tuple[dict, str]:
        async with client_for(create_app(sup)) as c:
            return (await c.get("/api/health")).json(), (await c.get("/metrics")).text

    h, text = run(go())
    s = samples(text)
    assert h["shard"] == "2/4"
    assert s[("solarbridge_daemon_shard", (("count", "4"), ("index", "2"), ("shard", "2/4")))] == 1
    assert s[("solarbridge_daemon_shard_sources", ())] == mine == len(sup.sources)
