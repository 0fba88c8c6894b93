"""Shared bits of the enphase tests."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from solarbridge.sinks.nut.portfile import parse_line
from solarbridge.sources.enphase.simulator import GatewaySimulator, Scenario
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "enphase"
FIXTURES = DATA  # one folder per recorded pyenphase set (and example/, livedata/)
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


class Harness:
    """enphase-monitor's parts wired by hand, one poll at a time: the enphase source's engine feeding a nut sink."""

    def __init__(self, s, gateway, cloud, rep=None) -> None:  # noqa: ANN001
        from solarbridge.plugin import Context
        from solarbridge.sinks.nut.portfile import DEFAULT_SETTINGS
        from solarbridge.sinks.nut.sink import NutSink, NutSinkConfig
        from solarbridge.sources.enphase import monitor as m
        from solarbridge.sources.enphase.source import EnphaseSource, MonitorMode

        rep = rep or m.Reporter(s.ups)
        cfg = NutSinkConfig.model_construct(type="nut", name="nut", port_file=str(s.port_file), device_id=s.serial,
                                            loadkwh=s.loadkwh, stale_after=0, keep_user_lines=s.keep_user_lines)
        self.sink = NutSink(cfg, Context.standalone("nut", "sink", "nut", s.state_dir))
        self.sink.notes = rep
        self.sink.load_initial()
        self.readings: list = []
        pending: list = []

        def emit(r) -> None:  # noqa: ANN001
            pending.append(r)
            self.readings.append(r)

        async def written() -> None:
            batch = pending[:]
            pending.clear()
            await self.sink.write(batch)

        def charge_low() -> str | None:
            return {**DEFAULT_SETTINGS, **self.sink.port.overrides()}.get("battery.charge.low")

        mode = MonitorMode(s, gateway, cloud, rep, after_emit=written, charge_low=charge_low)
        self.source = EnphaseSource.monitor_mode(s, Context.standalone(s.ups, "source", "enphase", s.state_dir), mode)
        self.monitor = self.source.make_monitor(emit)
