"""Shared bits of the enphase tests."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from solarbridge.sources.enphase.nut import parse_line
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario

DATA = Path(__file__).resolve().parent.parent / "data" / "enphase"
FIXTURES = DATA / "pyenphase"
EXAMPLE = DATA / "example"


def port_values(text: str) -> dict[str, str]:
    return dict(parse_line(line) for line in text.splitlines() if line.strip())


def example_settings(name: str) -> str:
    """A TEST_* value of the example test.conf."""
    from solarbridge.sources.enphase import conffile

    return conffile.parse((EXAMPLE / "test.conf").read_text(), {})[name]


class SimThread:
    """The simulator running in its own event loop thread, for tests that call the blocking CLI."""

    def __init__(self, scenario: Scenario) -> None:
        self.loop = asyncio.new_event_loop()
        self.sim = GatewaySimulator(scenario)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(10)

    @property
    def scenario(self) -> Scenario:
        return self.sim.scenario

    def set(self, **patch: object) -> None:
        self.loop.call_soon_threadsafe(self.sim.scenario.update, patch)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(5)

    def stats(self) -> dict[str, int]:
        return dict(self.sim.stats)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def write_conf(d: Path, host: str, **extra: str) -> Path:
    """A private config dir with an enphase-test.conf and an empty port file."""
    d.chmod(0o755)
    keys = {"USERNAME": "owner@example.com", "PASSWORD": "'pw d&='", "SERIAL": "202439990001",
            "PORT_FILE": "ups.dev", "STATE_DIR": str(d), "ENVOY_HOST": host, "API_TIMEOUT": "2"}
    keys.update(extra)
    conf = d / "enphase-test.conf"
    conf.write_text("".join(f"{k}={v}\n" for k, v in keys.items() if v is not None))
    conf.chmod(0o600)
    if not (d / "ups.dev").exists() and not (d / "ups.dev-nocomms").exists():
        (d / "ups.dev").write_text("ups.delay.shutdown: 20\n")
    return conf
