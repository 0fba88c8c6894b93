"""Issue 17 item 1 for the ``nut`` sink: at the end of a finite run the final state is in the port file,
and the real NUT (dummy-ups reading that file, upsd serving it) shows it with ``upsc`` after the run ended.

One real Sunsynk report (tests/data/sunsynk) read from a pcap through the daemon's own runtime; the
expected values are the report's oracle (battery SOC 54 %, grid 233.3 V, grid up), not our output.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from servers import async_wait_for
from solarbridge.config import build
from solarbridge.model import Reading
from solarbridge.plugin import Context, Source
from solarbridge.runtime import Supervisor
from support.sunsynk import DERIVED_PCAP

pytestmark = pytest.mark.servers


def _finite_run(tmp_path: Path, port_file: Path, timeout: float) -> tuple[Supervisor, dict[str, str]]:
    sup = Supervisor(build({
        "daemon": {"state_dir": str(tmp_path / "state"), "history": False},
        "sources": [{"type": "sunsynk_capture", "name": "sunsynk", "device": str(DERIVED_PCAP), "file": True,
                     "timezone": "Africa/Johannesburg"}],
        "sinks": [{"type": "nut", "name": "ups", "port_file": str(port_file)}],
    }))

    async def run() -> dict[str, str]:
        sup.build()
        await sup.start()
        await sup.wait_sources()
        return await sup.stop(deliver=True, timeout=timeout)

    return sup, asyncio.run(run())


def test_finite_run_final_state_is_served_by_upsd_after_exit(tmp_path: Path, nut: Any) -> None:
    assert nut.upsc("battery.charge") == "100"  # the fixture's initial file: the run must change it
    sup, undelivered = _finite_run(tmp_path, nut.port_file, 30)
    assert undelivered == {}
    assert sup.health["ups"].state == "stopped"
    # the run has ended; the real driver and server now serve what the run left in the port file
    assert nut.port_file.exists() and not Path(f"{nut.port_file}-nocomms").exists()
    nut.wait_value("battery.charge", "54", 15)
    assert nut.upsc("ups.status") == "OL"
    assert float(nut.upsc("input.voltage")) == 233.3


class OneReading(Source):
    """Emits one reading (SOC 54 %, grid 233.3 V) when ``go`` is set, then finishes."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(None, Context.standalone("inv", "source", "test", tmp))
        self.go = asyncio.Event()

    async def run(self, emit: Any) -> None:
        await self.go.wait()
        emit(Reading("inv1", "inverter", datetime.now(UTC), {"battery_soc_pct": 54, "grid_voltage_v": 233.3},
                     source="inv"))


def _run_with_port_file_gone(tmp_path: Path, port_file: Path, timeout: float,
                             restore: str | None = None) -> tuple[Supervisor, dict[str, str]]:
    """The port file disappears after the sink started and before the reading; ``restore`` puts it back
    (with that content) one second into the end-of-run drain."""
    sup = Supervisor(build({"daemon": {"state_dir": str(tmp_path / "state"), "history": False},
                            "sinks": [{"type": "nut", "name": "ups", "port_file": str(port_file)}]}))
    src = OneReading(tmp_path)

    async def run() -> dict[str, str]:
        sup.build()
        sup.add_source(src)
        await sup.start()
        await async_wait_for(lambda: sup.health["ups"].state == "running", 10, what="nut sink started")
        port_file.unlink()
        src.go.set()
        await sup.wait_sources()
        if restore is not None:
            asyncio.get_running_loop().call_later(1.0, port_file.write_text, restore)
        return await sup.stop(deliver=True, timeout=timeout)

    return sup, asyncio.run(run())


def test_port_file_gone_at_the_end_names_the_unwritten_state(tmp_path: Path) -> None:
    port_file = tmp_path / "ups.dev"
    port_file.write_text("ups.status: OL\nbattery.charge: 100\n")
    sup, undelivered = _run_with_port_file_gone(tmp_path, port_file, 2)
    assert undelivered == {"ups": f"the newest state of inv1 is not in the port file "
                                  f"(Port file '{port_file}' missing/write-protected!)"}
    assert sup.sinks["ups"].pending() == 1
    assert not port_file.exists()


def test_port_file_back_during_the_drain_gets_the_final_state(tmp_path: Path, nut: Any) -> None:
    """The state held while the file was gone is written once it is back, before the run ends."""
    sup, undelivered = _run_with_port_file_gone(tmp_path, nut.port_file, 30, restore="ups.status: OL\n")
    assert undelivered == {}
    nut.start_driver()  # NUT 2.8's dummy-ups exits when its port file disappears
    nut.wait_value("battery.charge", "54", 15)
    assert float(nut.upsc("input.voltage")) == 233.3
