"""Fixtures: the gateway simulator on a loopback port (in a thread), and a monitor config around it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from solarbridge.sources.enphase.simulator import Scenario
from support.enphase import SimThread, write_conf


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimThread]:
    s = SimThread(Scenario(username="owner@example.com", password="pw d&=", soc=95.0))
    monkeypatch.setenv("SOLARBRIDGE_ENPHASE_LOGIN_URL", s.sim.login_url)
    monkeypatch.setenv("SOLARBRIDGE_ENPHASE_TOKENS_URL", s.sim.tokens_url)
    monkeypatch.setenv("SOLARBRIDGE_ENPHASE_CLOUD_CA", str(s.sim.cert_path))
    yield s
    s.stop()


@pytest.fixture
def conf(sim: SimThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UPS", "test")
    return write_conf(tmp_path, f"127.0.0.1:{sim.sim.port}")


