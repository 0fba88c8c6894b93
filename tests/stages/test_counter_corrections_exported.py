"""Issue 14 item 3, "every correction is counted (health, /metrics)": a step-down and a spike fed through the
daemon's own pipeline (source -> counter stage -> bus) show up as counters in /api/health and in /metrics.

/metrics is read with prometheus_client's own text parser. The expected counts come from the sequence
below (one reading that steps down, one that jumps by 1 MWh in 10 s), not from our output.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servers import async_wait_for
from solarbridge.api.app import create_app
from solarbridge.config import build
from solarbridge.model import DeviceInfo, Reading
from solarbridge.plugin import Context, Emit, Source
from solarbridge.runtime import Supervisor
from support.api import T0, client_for, run
from support.prom import samples

#: (seconds after T0, lifetime PV counter in Wh); PV power 3.6 kW = 10 Wh per 10 s
GOOD = [(0, 50_000.0), (10, 50_010.0), (20, 50_020.0)]
STEP_DOWN = (30, 48_800.0)  # a gateway's lifetime production stepping down by 1.2 kWh
AFTER_STEP = [(40, 50_040.0), (50, 50_050.0)]
SPIKE = (60, 1_050_060.0)  # +1 MWh in 10 s
AFTER_SPIKE = [(70, 50_070.0), (80, 50_080.0)]


class SequenceSource(Source):
    """Emits a fixed list of readings for one device, then finishes (like a file replay)."""

    def __init__(self, tmp: Path, points: list[tuple[int, float]]) -> None:
        super().__init__(None, Context.standalone("seq", "source", "test", tmp))
        self.points = points
        self.info = DeviceInfo("pv1", "inverter", "Acme", "X1", "SN-PV1", source="seq")

    async def run(self, emit: Emit) -> None:
        for dt, wh in self.points:
            emit(Reading("pv1", "inverter", datetime.fromtimestamp(T0 + dt, UTC),
                         {"pv_energy_total_wh": wh, "pv_power_w": 3600.0}, source="seq", info=self.info))
            await asyncio.sleep(0)



STAGE = (("component", "counters"), ("kind", "stage"), ("type", "counters"))


def _through_daemon(tmp_path: Path, points: list[tuple[int, float]]) -> tuple[dict[str, Any], dict[Any, float],
                                                                                list[float]]:
    sup = Supervisor(build({"daemon": {"state_dir": str(tmp_path / "state"), "history": False}}))
    src = SequenceSource(tmp_path, points)
    sup.add_source(src)
    published: list[float] = []
    sup.bus.listeners.append(lambda r: published.append(r.metrics["pv_energy_total_wh"]))

    async def go() -> tuple[dict[str, Any], str]:
        await sup.start()
        await sup.wait_sources()
        await async_wait_for(lambda: len(published) == len(points), 10, what="every reading on the bus")
        async with client_for(create_app(sup)) as c:
            health = (await c.get("/api/health")).json()
            metrics = (await c.get("/metrics")).text
        await sup.stop()
        return health, metrics

    health, text = run(go())
    return health, samples(text), published


def test_step_down_and_spike_are_counted_in_health_and_metrics(tmp_path: Path) -> None:
    points = [*GOOD, STEP_DOWN, *AFTER_STEP, SPIKE, *AFTER_SPIKE]
    health, s, published = _through_daemon(tmp_path, points)
    # the corrections happened: what was published never decreases and carries no spike
    assert published == sorted(published) and max(published) == 50_080.0
    stage = next(c for c in health["components"] if c["name"] == "counters")
    assert stage["kind"] == "stage"
    assert stage["counters"]["counter_step_down"] == 1
    assert stage["counters"]["counter_spike"] == 1
    assert stage["counters"]["corrections"] == 2
    assert s[("solarbridge_daemon_counter_step_down_total", STAGE)] == 1
    assert s[("solarbridge_daemon_counter_spike_total", STAGE)] == 1
    assert s[("solarbridge_daemon_corrections_total", STAGE)] == 2


def test_clean_counters_count_no_correction(tmp_path: Path) -> None:
    """The same daemon on a clean sequence: no correction counted (the counters above are not constant)."""
    health, s, published = _through_daemon(tmp_path, [*GOOD, *AFTER_STEP])
    assert published == [wh for _, wh in [*GOOD, *AFTER_STEP]]
    stage = next(c for c in health["components"] if c["name"] == "counters")
    assert not any(k.startswith("counter_") or k == "corrections" for k in stage["counters"])
    assert not any(name.startswith("solarbridge_daemon_counter_") for name, _ in s)
