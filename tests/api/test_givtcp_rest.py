"""givtcp-rest as a real uvicorn service (2 workers) against an in-process simulator, via httpx."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import async_wait_for, free_port
from solarbridge.model import ControlRequest, ControlResult
from solarbridge.sources.givenergy.model import Plant
from support.givenergy import run, simulator

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("INVERTOR", "MQTT_", "INFLUX_", "HA_", "GIVTCP"))}


async def start_rest(sim_port: int, state_dir: Path, token: str = "", workers: int = 2,
                     extra: tuple[str, ...] = ()) -> tuple[Any, str]:
    port = free_port()
    args = [sys.executable, "-m", "solarbridge.cli.main", "giv", "rest", "--host", "127.0.0.1", "--port",
            str(sim_port), "--listen-port", str(port), "--workers", str(workers), "--state-dir", str(state_dir)]
    if token:
        args += ["--token", token]
    args += list(extra)
    env = {**ENV, "SELF_RUN_LOOP_TIMER": "0.5", "SELF_RUN_TIMER_FULL": "5"}
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


async def stop_rest(proc: Any) -> None:
    import signal
    if proc.returncode is None:
        os.killpg(proc.pid, signal.SIGTERM)  # uvicorn's supervisor and its workers (our own process group)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def wait_ready(client: httpx.AsyncClient, url: str, proc: Any, headers: dict[str, str] | None = None) -> None:
    async def serving() -> bool:
        return (await client.get(f"{url}/runAll", headers=headers)).status_code == 200

    await async_wait_for(serving, 20, "givtcp-rest to serve data", interval=0.1, ignore=(httpx.TransportError,),
                         stop_if=lambda: proc.returncode is not None and f"givtcp-rest exited {proc.returncode}")


def test_rest_service_cache_controls_errors(tmp_path: Path) -> None:
    async def go() -> None:
        async with simulator() as sim:
            proc, url = await start_rest(sim.port, tmp_path)
            try:
                async with httpx.AsyncClient(timeout=20) as c:
                    await wait_ready(c, url, proc)
                    # every read route, from the cache
                    for path in ("runAll", "runALL", "getTimeslots", "getCombinedStats", "getModesandTimes"):
                        r = await c.get(f"{url}/{path}")
                        assert r.status_code == 200, path
                    assert (await c.get(f"{url}/runAll")).json()["Invertor Details"]["Invertor Serial Number"] \
                        == sim.inverter.serial
                    # one poller for two workers: one dongle connection, and 200 GETs cost no inverter requests
                    before = sim.stats["requests"]
                    t0 = time.monotonic()
                    await asyncio.gather(*(c.get(f"{url}/runAll") for _ in range(200)))
                    window = time.monotonic() - t0
                    polls = window / 0.5 + 2
                    assert sim.stats["requests"] - before <= polls * 6
                    assert sim.stats["connections"] == 1
                    # controls, answered after the write is verified, whichever worker takes them
                    for pct in (41, 42, 43, 44, 45, 46):
                        r = await c.post(f"{url}/setChargeTarget", json={"chargeToPercent": str(pct)})
                        assert r.status_code == 200, r.text
                        body = r.json()
                        assert body["result"] == "Setting Charge Target was a success"
                        # named fields read back, never raw register numbers
                        assert body["details"]["read_back"]["charge_target_soc"] == pct
                        assert not any(k.isdigit() for k in body["details"]["writes"])
                        assert sim.inverter.holding[116] == pct
                    r = await c.post(f"{url}/setBatteryMode", json={"mode": "Timed Export"})
                    assert r.status_code == 200

                    async def mode_shown() -> bool:
                        return (await c.get(f"{url}/runAll")).json()["Control"]["Battery Mode"] == "Timed Export"

                    await async_wait_for(mode_shown, 5, "the cache to show the new mode", interval=0.1)
                    # bad payloads: 4xx naming the field, nothing written
                    n = len(sim.inverter.write_log)
                    r = await c.post(f"{url}/setChargeSlot1", json={"start": "0100", "finish": "2561"})
                    assert r.status_code == 400 and "finish" in r.json()["result"]
                    r = await c.post(f"{url}/setChargeTarget", content=b"{nope")
                    assert r.status_code == 400
                    r = await c.post(f"{url}/setBatteryMode", json={"mode": "9"})
                    assert r.status_code == 400 and "1..4" in r.json()["result"]
                    assert len(sim.inverter.write_log) == n
                    # inverter gone: 503 for reads and writes
                    await sim.stop()

                    async def unavailable() -> bool:
                        return (await c.get(f"{url}/runAll")).status_code == 503

                    await async_wait_for(unavailable, 10, "a 503 after the inverter went away", interval=0.1)
                    r = await c.post(f"{url}/pauseChargeSchedule", json={})
                    assert r.status_code == 503
            finally:
                await stop_rest(proc)
    run(go(), timeout=90)


@pytest.mark.parametrize("token_reads", [False, True], ids=["controls-only", "token-reads"])
def test_rest_bearer_token(tmp_path: Path, token_reads: bool) -> None:
    """The token guards the control routes; GivTCP's clients read without one unless --token-reads."""
    async def go() -> None:
        async with simulator() as sim:
            proc, url = await start_rest(sim.port, tmp_path, token="s3cret", workers=1,
                                         extra=("--token-reads",) if token_reads else ())
            try:
                async with httpx.AsyncClient(timeout=20) as c:
                    await wait_ready(c, url, proc, {"Authorization": "Bearer s3cret"})
                    for path in ("runAll", "getModesandTimes", "1/runAll", f"{sim.inverter.serial}/runAll"):
                        assert (await c.get(f"{url}/{path}")).status_code == (401 if token_reads else 200), path
                    r = await c.get(f"{url}/runAll", headers={"Authorization": "Bearer nope"})
                    assert r.status_code == (401 if token_reads else 200)
                    for path in ("setChargeTarget", "1/setChargeTarget"):
                        r = await c.post(f"{url}/{path}", json={"chargeToPercent": "60"})
                        assert r.status_code == 401 and sim.inverter.write_log == []
                    r = await c.post(f"{url}/setChargeTarget", json={"chargeToPercent": "60"},
                                     headers={"Authorization": "Bearer s3cret"})
                    assert r.status_code == 200 and sim.inverter.holding[116] == 60
            finally:
                await stop_rest(proc)
    run(go(), timeout=60)


class _FakeSource:
    """Enough of GivEnergySource for the daemon-side router (supervisor backend)."""

    def __init__(self, plant: Plant) -> None:
        from types import SimpleNamespace
        self.config = SimpleNamespace(type="givenergy", layout="v1", print_raw=False)
        self.client = SimpleNamespace(plant=plant, connected=True)
        self.last_reading = object()
        self.requests: list[ControlRequest] = []

    async def control(self, req: ControlRequest) -> ControlResult:
        self.requests.append(req)
        return ControlResult(True, "Setting Charge Target was a success")


def test_daemon_router_uses_supervisor(tmp_path: Path) -> None:
    """create_router(supervisor) serves the source's cache and routes POSTs through supervisor.control."""
    from fastapi import FastAPI

    from solarbridge.api.givtcp import create_router
    from solarbridge.sources.givenergy.simulator import SimInverter

    inv = SimInverter()
    plant = Plant()
    plant.holding.update(enumerate(inv.holding[:180]))
    plant.input.update(enumerate(inv.input[:240]))
    src = _FakeSource(plant)

    class Sup:
        sources = {"ge": src}

        async def control(self, req: ControlRequest) -> ControlResult:
            return await src.control(req)

    app = FastAPI()
    app.include_router(create_router(Sup()))

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/getModesandTimes")
            assert r.status_code == 200 and r.json()["Control"]["Target SOC"] == 100
            r = await c.post("/setChargeTarget", json={"chargeToPercent": "70"})
            assert r.status_code == 200
            assert src.requests[-1].command == "setChargeTarget" and src.requests[-1].device_id == inv.serial
            r = await c.post("/setChargeTarget", json={"chargeToPercent": "170"})
            assert r.status_code == 400 and len(src.requests) == 1
    run(go())


def test_shared_backend_one_poller_and_forwarded_controls(tmp_path: Path) -> None:
    """Two workers' backends on one state dir: one leader polls, the follower reads its cache file and
    forwards controls over the unix socket; when the leader stops, the follower takes over."""
    from solarbridge.api.givtcp import SharedBackend
    from solarbridge.sources.givenergy.settings import load_settings

    async def go() -> None:
        async with simulator() as sim:
            settings = load_settings(env={"INVERTOR_IP": "127.0.0.1", "INVERTOR_PORT": str(sim.port),
                                          "SELF_RUN_LOOP_TIMER": "0.2"})
            a, b = SharedBackend(settings, tmp_path), SharedBackend(settings, tmp_path)
            await a.start()
            await b.start()
            try:
                assert a.leader and not b.leader
                await async_wait_for(lambda: b.snapshot() is not None, timeout=15, what="cache file")
                assert b.snapshot()["serial"] == sim.inverter.serial  # type: ignore[index]
                assert b.serials() == [sim.inverter.serial]
                status, body = await b.control("setBatteryReserve", {"dischargeToPercent": "17"})
                assert status == 200 and body["result"] == "Setting Battery Reserve was a success"
                assert sim.inverter.holding[110] == 17
                status, body = await b.control("setBatteryReserve", {"dischargeToPercent": "170"})
                assert status == 400 and "dischargeToPercent" in body["result"]
                # one poller: the follower never opened a connection of its own (the leader may have
                # reconnected on a loaded machine, but never alongside another client)
                assert sim.stats["max_concurrent_clients"] == 1
                before = sim.stats["connections"]
                await a.stop()
                await async_wait_for(lambda: b.leader, timeout=10, what="follower takes over")
                await async_wait_for(lambda: sim.stats["connections"] > before, timeout=10, what="new poller connects")
            finally:
                await b.stop()
                await a.stop()
    run(go(), timeout=60)


def test_daemon_api_serves_givtcp_routes_from_a_real_supervisor(tmp_path: Path) -> None:
    """The web service's create_app mounts our router for a configured givenergy source."""
    app_mod = pytest.importorskip("solarbridge.api.app")
    from solarbridge.config import ApiConfig, build
    from solarbridge.runtime import Supervisor

    async def go() -> None:
        async with simulator() as sim:
            cfg = build({"daemon": {"state_dir": str(tmp_path), "history": False},
                         "sources": [{"type": "givenergy", "name": "ge", "host": "127.0.0.1", "port": sim.port,
                                      "poll_interval": 0.2, "request_gap": 0}]})
            sup = Supervisor(cfg)
            sup.build()
            await sup.start()
            try:
                app = app_mod.create_app(sup, ApiConfig(enabled=True))
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                    last: list[httpx.Response] = []

                    async def served() -> httpx.Response | None:
                        last[:] = [await c.get("/runAll")]
                        return last[0] if last[0].status_code == 200 else None

                    r = await async_wait_for(served, 10, lambda: f"/runAll to answer 200 (last: {last[0].text})",
                                             interval=0.05)
                    assert r.json()["Invertor Details"]["Invertor Serial Number"] == sim.inverter.serial
                    r = await c.post("/setBatteryReserve", json={"dischargeToPercent": "21"})
                    assert r.status_code == 200, r.text
                    assert sim.inverter.holding[110] == 21
                    r = await c.get("/getModesandTimes")
                    assert r.json()["Control"]["Battery Power Reserve"] == 21
            finally:
                await sup.stop()
    run(go(), timeout=60)


def test_shared_backend_serves_several_inverters_by_number_and_serial(tmp_path: Path) -> None:
    """INVERTOR_IP lists two dongles: one source each; /1/, /2/ and /<serial>/ address them, controls too."""
    from fastapi import FastAPI

    from solarbridge.api.givtcp import SharedBackend, build_router
    from solarbridge.sources.givenergy.settings import load_settings
    from solarbridge.sources.givenergy.simulator import DongleSimulator, SimInverter

    async def go() -> None:
        sims = [DongleSimulator(SimInverter(m, 1, serial=f"SA0000G00{i}"), "127.0.0.1", 0)
                for i, m in ((1, "hybrid"), (2, "ac"))]
        for s in sims:
            await s.start()
        settings = load_settings(env={"INVERTOR_IP": ",".join(f"127.0.0.1:{s.port}" for s in sims),
                                      "SELF_RUN_LOOP_TIMER": "0.2"})
        backend = SharedBackend(settings, tmp_path)
        await backend.start()
        app = FastAPI()
        app.include_router(build_router(backend))
        try:
            await async_wait_for(lambda: all(backend.snapshot(i) for i in (0, 1)), timeout=15, what="both inverters")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                assert (await c.get("/getInverters")).json() == [{"number": 1, "serial": "SA0000G001"},
                                                                 {"number": 2, "serial": "SA0000G002"}]
                for prefix, serial in (("", "SA0000G001"), ("/1", "SA0000G001"), ("/2", "SA0000G002"),
                                       ("/SA0000G002", "SA0000G002")):
                    r = await c.get(f"{prefix}/getModesandTimes")
                    assert r.json()["Invertor Details"]["Invertor Serial Number"] == serial, prefix
                r = await c.post("/SA0000G002/setBatteryReserve", json={"dischargeToPercent": "23"})
                assert r.status_code == 200 and r.json()["value"]["battery_soc_reserve"] == 23
                assert sims[1].inverter.holding[110] == 23 and sims[0].inverter.write_log == []
                assert (await c.get("/3/runAll")).status_code == 404
                assert (await c.post("/SA9999G999/setChargeTarget", json={"chargeToPercent": 50})).status_code == 404
            # each inverter's own state file (saved reserve, timed controls)
            assert (tmp_path / "givenergy-givtcp2.json").exists()
        finally:
            await backend.stop()
            for s in sims:
                await s.stop()
    run(go(), timeout=60)


def test_rest_ems_and_three_phase_controls(tmp_path: Path) -> None:
    """The EMS's and the three-phase unit's own controls through givtcp-rest: 200 with the value read back, 400
    naming the field (or the command the model lacks) with nothing written."""
    async def go() -> None:
        for model, good, bad in (
                ("ems", [("setExportSlot1", {"start": "16:00", "finish": "18:30", "exportToPercent": "20"},
                          {2062: 1600, 2063: 1830, 2064: 20}),
                         ("setEmsPlant", {"state": "disable"}, {2040: 0})],
                 [("setExportTarget2", {"percent": "150"}, "percent"), ("setBatteryMode", {"mode": "Eco"}, "command")]),
                ("3ph", [("enableEPS", {"state": "disable"}, {1105: 0}),
                         ("setChargeTarget3", {"percent": "85"}, {248: 85})],
                 [("setBatteryPauseMode", {"state": "Pause Charge"}, "command"),
                  ("setDischargeTarget2", {"percent": "101"}, "percent")])):
            async with simulator(model=model) as sim:
                proc, url = await start_rest(sim.port, tmp_path / model, workers=1)
                try:
                    async with httpx.AsyncClient(timeout=20) as c:
                        await wait_ready(c, url, proc)
                        for command, body, regs in good:
                            r = await c.post(f"{url}/{command}", json=body)
                            assert r.status_code == 200, r.text
                            assert {reg: sim.inverter.holding[reg] for reg in regs} == regs
                            assert r.json()["details"]["writes"] == r.json()["details"]["read_back"]
                        n = len(sim.inverter.write_log)
                        for command, body, field in bad:
                            r = await c.post(f"{url}/{command}", json=body)
                            assert r.status_code == 400 and r.json()["field"] == field, r.text
                        assert len(sim.inverter.write_log) == n
                finally:
                    await stop_rest(proc)
    run(go(), timeout=90)
