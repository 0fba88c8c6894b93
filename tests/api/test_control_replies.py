"""Control replies as documented: named fields read back, the documented error body, and the GivTCP read routes
open while the token guards controls (against a real supervisor and a GivEnergy simulator)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import async_wait_for
from solarbridge.api.app import create_app
from solarbridge.config import ApiConfig, build
from solarbridge.runtime import Supervisor
from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _documented_replies() -> list[Any]:
    section = DOCS.read_text().split("### `POST /api/devices/{device_id}/control`")[1].split("\n## ")[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


async def _daemon(tmp_path: Path, sim_port: int) -> Supervisor:
    cfg = build({"daemon": {"state_dir": str(tmp_path), "history": False},
                 "sources": [{"type": "givenergy", "name": "ge", "host": "127.0.0.1", "port": sim_port,
                              "poll_interval": 0.2, "request_gap": 0}]})
    sup = Supervisor(cfg)
    sup.build()
    await sup.start()
    return sup


def _has_reading(sup: Supervisor, serial: str) -> bool:
    return serial in sup.bus.devices and "charge_target_pct" in sup.bus.devices[serial].latest


def test_control_reply_and_error_are_as_documented(tmp_path: Path) -> None:
    ok_doc, error_doc = _documented_replies()

    async def go() -> None:
        sim = DongleSimulator(SimInverter("hybrid", 1), "127.0.0.1", 0)
        await sim.start()
        sup = await _daemon(tmp_path, sim.port)
        try:
            serial = sim.inverter.serial
            await async_wait_for(lambda: _has_reading(sup, serial), 15, f"a reading of {serial} from the simulator")
            app = create_app(sup, ApiConfig(enabled=True))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                r = await c.post(f"/api/devices/{serial}/control", json={"command": "charge_target_pct", "value": 150})
                assert r.status_code == 400 and r.json() == error_doc
                assert sim.inverter.write_log == []
                r = await c.post(f"/api/devices/{serial}/control", json={"command": "charge_target_pct", "value": 80})
                assert r.status_code == 200 and r.json() == ok_doc
                assert sim.inverter.holding[116] == 80
                latest = (await c.get(f"/api/devices/{serial}/latest")).json()["metrics"]
                assert latest["charge_target_pct"] == r.json()["value"]
        finally:
            await sup.stop()
            await sim.stop()
    asyncio.run(asyncio.wait_for(go(), 60))


@pytest.mark.parametrize("token_reads", [False, True], ids=["reads-open", "givtcp_token_reads"])
def test_givtcp_reads_need_no_token_unless_asked(tmp_path: Path, token_reads: bool) -> None:
    async def go() -> None:
        sim = DongleSimulator(SimInverter("hybrid", 1), "127.0.0.1", 0)
        await sim.start()
        sup = await _daemon(tmp_path, sim.port)
        try:
            await async_wait_for(lambda: _has_reading(sup, sim.inverter.serial), 15,
                                 "a reading from the simulator")
            app = create_app(sup, ApiConfig(enabled=True, token="s3cret", givtcp_token_reads=token_reads))
            auth = {"Authorization": "Bearer s3cret"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                for path in ("/runAll", "/getTimeslots", "/getCombinedStats", "/getModesandTimes", "/1/runAll"):
                    r = await c.get(path)
                    assert r.status_code == (401 if token_reads else 200), path
                    assert (await c.get(path, headers=auth)).status_code == 200, path
                r = await c.post("/setChargeTarget", json={"chargeToPercent": "60"})
                assert r.status_code == 401 and sim.inverter.write_log == []
                r = await c.post("/setChargeTarget", json={"chargeToPercent": "60"}, headers=auth)
                assert r.status_code == 200 and sim.inverter.holding[116] == 60
        finally:
            await sup.stop()
            await sim.stop()
    asyncio.run(asyncio.wait_for(go(), 60))
