"""GivTCP-compatible REST routes, in the daemon's API and as the standalone ``givtcp-rest`` app.

GET ``/runAll`` (``/runALL``, ``/readData``, ``/getCache``), ``/getTimeslots``, ``/getCombinedStats``,
``/getModesandTimes`` answer from a cache that the background poll keeps fresh: an HTTP
request never costs an inverter round trip. POST ``/<command>`` (``/setChargeTarget``,
``/setChargeSlot1`` ...) takes GivTCP's JSON payload and answers ``{"result": ...}`` after the
write was confirmed and read back; 4xx with the field and range for a bad payload, 503 when
the inverter is unreachable.

Several inverters: the unprefixed routes are the first one's; ``/<n>/runAll``, ``/<n>/setChargeTarget``
... address inverter ``n`` (1-based, in config order, as GivTCP numbers them) and ``/<serial>/...`` the
same by serial; ``GET /getInverters`` lists them. A bearer token guards the control routes; the read
routes need it only with ``givtcp_token_reads`` (GivTCP's clients read without one).

Several uvicorn workers share ONE poller: the worker that holds an ``flock`` on
``<state_dir>/givtcp-rest.lock`` polls the inverter, writes the cache file atomically and
serves a unix socket through which the other workers forward control requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from ..model import ControlError, ControlRequest
from ..sources.givenergy import controls as ge_controls
from ..sources.givenergy import givtcp as ge_givtcp
from ..sources.givenergy.model import Plant
from ..util.aiorun import cancel_and_wait

READ_ROUTES = {
    "runAll": "runAll", "runALL": "runAll", "readData": "runAll", "getCache": "runAll",
    "getTimeslots": "getTimeslots", "getCombinedStats": "getCombinedStats", "getModesandTimes": "getModesandTimes",
}
NO_DATA = {"Result": "Error, no data available"}


def snapshot(plant: Plant, *, layout: str = "v1", raw: bool = False, online: bool = True) -> dict[str, Any]:
    """Everything the read routes serve, computed once per poll."""
    return {
        "runAll": ge_givtcp.run_all(plant, raw=raw, layout=layout),
        "getTimeslots": ge_givtcp.get_timeslots(plant),
        "getCombinedStats": ge_givtcp.get_combined_stats(plant, raw=raw),
        "getModesandTimes": ge_givtcp.get_modes_and_times(plant, raw=raw),
        "serial": plant.serial,
        "online": online,
        "updated": time.time(),
    }


class Backend:
    """Where the routes get data and send controls; inverters are numbered from 0 in config order."""

    def serials(self) -> list[str]:
        raise NotImplementedError

    def snapshot(self, index: int = 0) -> dict[str, Any] | None:
        raise NotImplementedError

    async def control(self, command: str, payload: Any, index: int = 0) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError


def _control_error_body(command: str, e: ControlError) -> dict[str, Any]:
    return {"result": f"Setting {command} failed: {e}", "error": str(e), "field": e.field_name}


def _control_reply(res: Any) -> dict[str, Any]:
    """GivTCP's ``{"result": ...}``, plus the state read back and the writes by name (never raw registers)."""
    body: dict[str, Any] = {"result": res.message}
    if res.value is not None:
        body["value"] = res.value
    if res.details:
        body["details"] = res.details
    return body


class SupervisorBackend(Backend):
    """The daemon: every ``givenergy`` source's register cache, in config order; controls through the runtime."""

    def __init__(self, supervisor: Any) -> None:
        self.sup = supervisor
        self._cache: dict[int, tuple[int, dict[str, Any]]] = {}

    def _sources(self) -> list[Any]:
        return [src for src in getattr(self.sup, "sources", {}).values()
                if getattr(src.config, "type", "") == "givenergy"]

    def serials(self) -> list[str]:
        return [src.client.plant.serial for src in self._sources()]

    def snapshot(self, index: int = 0) -> dict[str, Any] | None:
        sources = self._sources()
        if not 0 <= index < len(sources):
            return None
        src = sources[index]
        if not src.client.plant.serial or src.last_reading is None:
            return None
        plant = src.client.plant
        cached = self._cache.get(id(src))
        if cached is None or cached[0] != plant.version:
            cached = (plant.version, snapshot(plant, layout=src.config.layout, raw=src.config.print_raw))
            self._cache[id(src)] = cached
        snap = dict(cached[1])
        snap["online"] = src.client.connected
        return snap

    async def control(self, command: str, payload: Any, index: int = 0) -> tuple[int, dict[str, Any]]:
        sources = self._sources()
        src = sources[index] if 0 <= index < len(sources) else None
        if src is None:
            return 503, {"result": f"Setting {command} failed: no GivEnergy inverter configured"}
        serial = src.client.plant.serial
        req = ControlRequest(serial, command, payload, origin="api")
        try:
            if hasattr(self.sup, "control") and serial:
                res = await self.sup.control(req)
            else:
                res = await src.control(req)
        except ControlError as e:
            return e.status, _control_error_body(command, e)
        return 200, _control_reply(res)


def _check_auth(request: Request, token: str) -> JSONResponse | None:
    if not token:
        return None
    got = request.headers.get("authorization", "")
    if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
        return JSONResponse({"result": "Error, missing or wrong bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return None


def _index(backend: Backend, inverter: str) -> int | None:
    """``1``..``N`` (GivTCP's numbering, config order) or an inverter serial -> index; None if unknown."""
    if inverter.isdigit():
        n = int(inverter)
        return n - 1 if 1 <= n <= len(backend.serials()) else None
    serials = backend.serials()
    for i, serial in enumerate(serials):
        if serial and serial.lower() == inverter.lower():
            return i
    return None


def _unknown_inverter(backend: Backend, inverter: str) -> JSONResponse:
    known = ", ".join(f"{i + 1} ({s or 'not seen yet'})" for i, s in enumerate(backend.serials()))
    return JSONResponse({"Result": f"Error, unknown inverter {inverter!r} (known: {known or 'none'})"},
                        status_code=404)


def build_router(backend: Backend, token: str = "", *, token_reads: bool = False) -> APIRouter:
    """GivTCP's routes for the first inverter, and under ``/<n>/`` or ``/<serial>/`` for every inverter.

    The token guards the control routes; the read routes too only with ``token_reads`` (GivTCP's own
    clients read without one).
    """
    router = APIRouter()
    read_token = token if token_reads else ""

    def read(key: str, index: int) -> JSONResponse:
        snap = backend.snapshot(index)
        if snap is None:
            return JSONResponse(NO_DATA, status_code=503)
        if not snap.get("online", True):
            return JSONResponse({"Result": "Error, inverter unreachable", "last_updated": snap.get("updated")},
                                status_code=503)
        return JSONResponse(snap[key])

    def make_get(key: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def get(request: Request) -> JSONResponse:
            denied = _check_auth(request, read_token)
            return denied if denied is not None else read(key, 0)
        return get

    def make_get_for(key: str) -> Callable[[Request, str], Awaitable[JSONResponse]]:
        async def get(request: Request, inverter: str) -> JSONResponse:
            denied = _check_auth(request, read_token)
            if denied is not None:
                return denied
            index = _index(backend, inverter)
            return _unknown_inverter(backend, inverter) if index is None else read(key, index)
        return get

    for path, key in READ_ROUTES.items():
        router.add_api_route(f"/{path}", make_get(key), methods=["GET"], name=f"givtcp_{path}")
        router.add_api_route(f"/{{inverter}}/{path}", make_get_for(key), methods=["GET"],
                             name=f"givtcp_inverter_{path}", include_in_schema=False)

    async def inverters(request: Request) -> JSONResponse:
        denied = _check_auth(request, read_token)
        if denied is not None:
            return denied
        return JSONResponse([{"number": i + 1, "serial": s} for i, s in enumerate(backend.serials())])

    router.add_api_route("/getInverters", inverters, methods=["GET"], name="givtcp_getInverters")

    async def post(request: Request, command: str, index: int) -> JSONResponse:
        denied = _check_auth(request, token)
        if denied is not None:
            return denied
        body = await request.body()
        payload: Any = {}
        if body.strip():
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                return JSONResponse({"result": f"Setting {command} failed: body is not valid JSON ({e})",
                                     "field": "payload"}, status_code=400)
        try:  # validate here too, so a bad payload never reaches the poller
            ge_controls.validate(command, payload)
        except ControlError as e:
            return JSONResponse(_control_error_body(command, e), status_code=e.status)
        status, reply = await backend.control(command, payload, index)
        return JSONResponse(reply, status_code=status)

    def make_post(command: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def route(request: Request) -> JSONResponse:
            return await post(request, command, 0)
        return route

    def make_post_for(command: str) -> Callable[[Request, str], Awaitable[JSONResponse]]:
        async def route(request: Request, inverter: str) -> JSONResponse:
            denied = _check_auth(request, token)
            if denied is not None:
                return denied
            index = _index(backend, inverter)
            if index is None:
                return _unknown_inverter(backend, inverter)
            return await post(request, command, index)
        return route

    for command in ge_controls.COMMANDS:
        router.add_api_route(f"/{command}", make_post(command), methods=["POST"], name=f"givtcp_{command}")
        router.add_api_route(f"/{{inverter}}/{command}", make_post_for(command), methods=["POST"],
                             name=f"givtcp_inverter_{command}", include_in_schema=False)
    return router


def create_router(supervisor: Any, api_config: Any = None) -> APIRouter:
    """Entry point for the daemon's API (see solarbridge.api.app)."""
    token = ""
    tok = getattr(api_config, "token", None)
    if tok is not None:
        token = tok.get_secret_value() if hasattr(tok, "get_secret_value") else str(tok)
    return build_router(SupervisorBackend(supervisor), token,
                        token_reads=bool(getattr(api_config, "givtcp_token_reads", False)))


# --------------------------------------------------------------------------- standalone givtcp-rest


class SharedBackend(Backend):
    """One poller per state dir, whatever the number of worker processes; one source per inverter."""

    def __init__(self, settings: Any, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.cache_file = state_dir / "givtcp-cache.json"
        self.lock_file = state_dir / "givtcp-rest.lock"
        self.sock_path = state_dir / "givtcp-control.sock"
        self.leader = False
        self._lock_fd: int | None = None
        self._sources: list[Any] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: asyncio.base_events.Server | None = None
        self._mem: dict[str, Any] | None = None
        self._file_cache: tuple[float, dict[str, Any] | None] = (0.0, None)

    # ---- leadership

    def _try_lead(self) -> bool:
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def start(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._try_lead():
            await self._become_leader()
        else:
            self._tasks.append(asyncio.create_task(self._follow()))

    async def _follow(self) -> None:
        while not self.leader:
            await asyncio.sleep(2.0)
            if self._try_lead():
                await self._become_leader()

    async def _become_leader(self) -> None:
        from ..plugin import Context
        from ..sources.givenergy.source import GivEnergySource

        self.leader = True
        for i in range(len(self.settings.inverters())):
            cfg = self.settings.source_config(i)
            src = GivEnergySource(cfg, Context.standalone(cfg.name, "source", "givenergy", self.state_dir))
            src.on_reading = lambda _r: self._write_snapshot()
            self._sources.append(src)
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve_control, path=str(self.sock_path))
        os.chmod(self.sock_path, 0o600)
        for src in self._sources:
            self._tasks.append(asyncio.create_task(src.run(lambda _r: None)))
        self._tasks.append(asyncio.create_task(self._watch_online()))

    def _write_snapshot(self) -> None:
        from ..util.atomic import atomic_write

        snaps = []
        for src in self._sources:
            if src.client.plant.serial and src.last_reading is not None:
                snaps.append(snapshot(src.client.plant, layout=src.config.layout, raw=src.config.print_raw,
                                      online=src.client.connected))
            else:
                snaps.append(None)
        self._mem = {"inverters": snaps, "serials": [src.client.plant.serial for src in self._sources]}
        atomic_write(self.cache_file, json.dumps(self._mem), mode=0o600, fsync=False)

    async def _watch_online(self) -> None:
        last: list[bool] = []
        while True:
            await asyncio.sleep(0.5)
            online = [src.client.connected for src in self._sources]
            if online != last and self._mem is not None:
                self._write_snapshot()
            last = online

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks, 5.0)
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.sock_path.unlink()
        for src in self._sources:
            await src.client.close()
        self._sources = []
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: a follower takes over
            self._lock_fd = None
        self.leader = False

    # ---- data

    def _shared(self) -> dict[str, Any] | None:
        if self.leader and self._mem is not None:
            return self._mem
        try:
            mtime = self.cache_file.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime != self._file_cache[0]:
            try:
                self._file_cache = (mtime, json.loads(self.cache_file.read_text()))
            except (OSError, ValueError):
                return self._file_cache[1]
        return self._file_cache[1]

    def serials(self) -> list[str]:
        shared = self._shared()
        if shared is None:
            return [""] * len(self.settings.inverters())
        return list(shared.get("serials", []))

    def snapshot(self, index: int = 0) -> dict[str, Any] | None:
        shared = self._shared()
        snaps = shared.get("inverters", []) if shared else []
        return snaps[index] if 0 <= index < len(snaps) else None

    async def control(self, command: str, payload: Any, index: int = 0) -> tuple[int, dict[str, Any]]:
        if self.leader:
            return await self._local_control(command, payload, index)
        try:
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(str(self.sock_path)), 5)
        except (OSError, TimeoutError):
            return 503, {"result": f"Setting {command} failed: the poller is not running"}
        try:
            w.write(json.dumps({"command": command, "payload": payload, "index": index}).encode() + b"\n")
            await w.drain()
            line = await asyncio.wait_for(r.readline(), 30)
            reply = json.loads(line)
            return int(reply["status"]), reply["body"]
        except (OSError, TimeoutError, ValueError, KeyError):
            return 503, {"result": f"Setting {command} failed: no answer from the poller"}
        finally:
            w.close()

    async def _local_control(self, command: str, payload: Any, index: int) -> tuple[int, dict[str, Any]]:
        if not 0 <= index < len(self._sources):
            return 404, {"result": f"Setting {command} failed: no inverter number {index + 1}"}
        try:
            res = await self._sources[index].control(ControlRequest("", command, payload, origin="api"))
        except ControlError as e:
            return e.status, _control_error_body(command, e)
        return 200, json.loads(json.dumps(_control_reply(res), default=str))

    async def _serve_control(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            line = await r.readline()
            req = json.loads(line)
            status, body = await self._local_control(str(req["command"]), req.get("payload"),
                                                     int(req.get("index", 0)))
            w.write(json.dumps({"status": status, "body": body}).encode() + b"\n")
            await w.drain()
        except (ValueError, KeyError, OSError, TypeError):
            pass
        finally:
            w.close()


def create_standalone_app(settings: Any, state_dir: Path, token: str = "", *, token_reads: bool = False) -> FastAPI:
    backend = SharedBackend(settings, state_dir)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.stop()

    app = FastAPI(title="givtcp-rest (solarbridge)", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.include_router(build_router(backend, token, token_reads=token_reads))
    app.state.backend = backend
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory (``--factory``) used by ``givtcp-rest``: settings come from the environment."""
    from ..sources.givenergy.settings import load_settings

    settings = load_settings()
    state_dir = Path(os.environ.get("GIVTCP_STATE_DIR") or settings.cache_location)
    return create_standalone_app(settings, state_dir, os.environ.get("GIVTCP_REST_TOKEN", ""),
                                 token_reads=os.environ.get("GIVTCP_REST_TOKEN_READS", "") == "1")
