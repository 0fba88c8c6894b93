"""Shared test set-up: real-server fixtures, hypothesis profiles, server logs on failure."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

import servers  # noqa: E402
from servers import (  # noqa: E402,F401  (fixtures)
    carbon,
    mosquitto,
    mosquitto_factory,
    nut,
    nut_factory,
    victoria,
)

#: fixtures shared across folders live in tests/support/ (helpers there are imported by name)
pytest_plugins = [
    "support.api",
    "support.converters",
    "support.enphase_fixtures",
    "support.mqtt_influx_fixtures",
    "support.solaredge",
]

# A shell starts a background job ("pytest ... &") with SIGINT ignored, and an ignored signal stays ignored
# across exec: every command a test starts and stops with SIGINT (Ctrl-C) would then never stop. Tests run
# with the default disposition, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: the daemon's default state dir (history, counters, sites, spools) for every test and every command a test
#: starts: a private one per test process, never /var/lib/solarbridge or ~/.local/state shared with other runs
_STATE_HOME = tempfile.mkdtemp(prefix="solarbridge-test-state-")
os.environ["XDG_STATE_HOME"] = _STATE_HOME
atexit.register(shutil.rmtree, _STATE_HOME, True)

settings.register_profile("default", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fuzz" if os.environ.get("SOLARBRIDGE_FUZZ") else "default")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _track_servers():
    servers.ACTIVE.clear()
    yield
    servers.ACTIVE.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and servers.ACTIVE:
        logs = "\n".join(s.logs() for s in servers.ACTIVE)
        report.sections.append(("real server logs", logs))
