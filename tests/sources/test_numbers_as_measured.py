"""Numbers as measured, in every family (issue 17 item 17): no binary float noise in any reading.

Every built-in simulator runs through its family's real decoder and source (as `solarbridge demo` wires
them), and the recorded Sunsynk report goes through the capture decoder. Every float metric must be
written with no more decimals than its resolution: the resolution the family's metric map declares
(:class:`solarbridge.metricmap.MetricDesc`), and otherwise (no resolution, or SolarEdge's float32, whose
shortest form has at most 9) no more than 10 significant digits (binary noise,
such as 212.20000000000002 or 938.1662499999999, has 16-17).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from servers import async_wait_for
from solarbridge.metricmap import FLOAT32, MetricDesc, decimals_of

REPO = Path(__file__).resolve().parents[2]

#: the modules whose module-level tuples of MetricDesc declare each family's metrics
METRIC_MAP_MODULES = {
    "synthetic": "solarbridge.sources.synthetic.model",
    "sunsynk": "solarbridge.sources.sunsynk.fields",
    "givenergy": "solarbridge.sources.givenergy.readings",
    "enphase": "solarbridge.sources.enphase.source",
    "solaredge": "solarbridge.sources.solaredge.readings",
}


def declared_decimals(family: str) -> dict[str, int]:
    """metric -> decimals allowed by the coarsest resolution the family declares for it."""
    out: dict[str, int] = {}
    for name in (METRIC_MAP_MODULES[family],):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(mod).values():
            items = value if isinstance(value, tuple | list) else ()
            for d in items:
                if isinstance(d, MetricDesc) and d.resolution not in (None, FLOAT32):
                    out[d.metric] = max(out.get(d.metric, 0), decimals_of(d.resolution))
    return out


def significant_digits(text: str) -> int:
    mantissa = text.lstrip("-").split("e")[0].replace(".", "")
    return len(mantissa.strip("0")) or 1


def decimals(text: str) -> int:
    if "e" in text or "." not in text:
        return 0
    return len(text.split(".")[1].rstrip("0"))


def noisy(metric: str, value: float, allowed: dict[str, int]) -> str:
    """Why ``value`` is not written as measured ('' if it is)."""
    text = repr(value)
    if significant_digits(text) > 10:
        return f"{metric}={text}: {significant_digits(text)} significant digits (binary noise)"
    if metric in allowed and decimals(text) > allowed[metric]:
        return f"{metric}={text}: more decimals than its resolution allows ({allowed[metric]})"
    return ""


def test_noise_detector_catches_the_reported_values():
    allowed = {"battery_charge_energy_total_kwh": 1}
    assert noisy("battery_charge_energy_total_kwh", 212.20000000000002, allowed)
    assert noisy("x_c", 58.400000000000006, {})
    assert noisy("mean_w", 938.1662499999999, {})
    assert noisy("battery_charge_energy_total_kwh", 212.25, allowed)
    assert not noisy("battery_charge_energy_total_kwh", 212.2, allowed)
    assert not noisy("grid_power_w", -1027.2, {})


FAMILY_NAMES = ("synthetic", "enphase", "solaredge", "givenergy", "sunsynk")


@pytest.fixture(scope="module")
def demo_readings(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every family's demo simulators, read by their sources under the Supervisor (as `solarbridge demo`
    wires them, without the synthetic home's 24 h backfill), until each family has been read (or 90 s)."""
    from solarbridge import registry
    from solarbridge.config import build
    from solarbridge.runtime import Supervisor

    workdir = tmp_path_factory.mktemp("demo")
    got: list[dict] = []

    async def collect() -> None:
        parts = [await importlib.import_module(m).start(workdir) for m in registry.DEMO_PARTS]
        try:
            sources = [dict(s, backfill="0s") if s["type"] == "synthetic" else s for p in parts for s in p.sources]
            cfg = build({"daemon": {"state_dir": str(workdir), "history": False}, "sources": sources})
            sup = Supervisor(cfg)
            sup.build()
            sup.bus.listeners.append(lambda r: got.append({"source": r.source, "device_type": r.device_type,
                                                           "metrics": dict(r.metrics)}))
            await sup.start()

            def every_family() -> bool:
                return {f for f in FAMILY_NAMES if any(r["source"].startswith(f) for r in got)} == set(FAMILY_NAMES)

            with contextlib.suppress(TimeoutError):  # a family that never reports fails its own test below
                await async_wait_for(every_family, 90, "a reading from every family", interval=0.2)
            await sup.stop()
        finally:
            for p in parts:
                if p.stop is not None:
                    res = p.stop()
                    if asyncio.iscoroutine(res):
                        await res

    asyncio.run(collect())
    return got


FAMILIES = ["synthetic", "enphase", "solaredge", "givenergy", "sunsynk"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_simulator_reading_is_written_as_measured(demo_readings, family):
    allowed = declared_decimals(family)
    mine = [r for r in demo_readings if r["source"].startswith(family)]
    assert mine, f"the demo produced no {family} readings (sources: {sorted({r['source'] for r in demo_readings})})"
    problems: dict[str, set[str]] = defaultdict(set)
    for r in mine:
        for metric, value in r["metrics"].items():
            if isinstance(value, float):
                why = noisy(metric, value, allowed)
                if why:
                    problems[r["device_type"]].add(why)
    assert not problems, {k: sorted(v)[:8] for k, v in problems.items()}


def test_recorded_sunsynk_report_in_line_protocol():
    """The real 292-byte report: its InfluxDB lines in both schemas carry every value as measured
    (the issue saw 212.20000000000002 kWh and 58.400000000000006 °C)."""
    sys.path.insert(0, str(REPO / "tests"))
    from solarbridge.sinks.influx.sink import LineEncoder
    from support.sunsynk import DERIVED_PCAP, run_file

    (reading,), _ = run_file(DERIVED_PCAP)
    allowed = declared_decimals("sunsynk")
    assert allowed["battery_voltage_v"] == 2 and allowed["grid_voltage_v"] == 1
    for metric, value in reading.metrics.items():
        if isinstance(value, float):
            assert not noisy(metric, value, allowed)
    for schema in ("wide", "sunsniff"):
        lines: list[str] = []
        LineEncoder(schema).encode([reading], lines)
        assert lines
        numbers = re.findall(r"=(-?\d+\.\d+(?:e-?\d+)?)(?=[, ])", " ".join(lines))
        assert numbers
        for text in numbers:
            assert significant_digits(text) <= 10 and decimals(text) <= 2, (schema, text)
        if schema == "sunsniff":
            joined = " ".join(lines)
            assert "212.2 " in joined or "212.2," in joined, joined
            assert "212.20000000000002" not in joined
