"""GivTCP-compatible REST routes, in the daemon's API and as the standalone ``givtcp-rest`` app.

GET ``/runAll`` (``/runALL``, ``/readData``, ``/getCache``), ``/getTimeslots``, ``/getCombinedStats``,
``/getModesandTimes`` answer from a cache that the background poll keeps fresh: an HTTP
request never costs an inverter round trip. POST ``/<command>`` (``/setChargeTarget``,
``/setChargeSlot1`` ...) takes GivTCP's JSON payload and answers ``{"result": ...}`` after the
write was confirmed and read back; 4xx with the field and range for a bad payload, 503 when
the inverter is unreachable.

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
    """Where the routes get data and send controls."""

    def snapshot(self) -> dict[str, Any] | None:
        raise NotImplementedError

    async def control(self, command: str, payload: Any) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError


def _control_error_body(command: str, e: ControlError) -> dict[str, Any]:
    return {"result": f"Setting {command} failed: {e}", "error": str(e), "field": e.field_name}


class SupervisorBackend(Backend):
    """The daemon: the first ``givenergy`` source's register cache; controls through the runtime."""

    def __init__(self, supervisor: Any) -> None:
        self.sup = supervisor
        self._cache: tuple[int, dict[str, Any]] | None = None

    def _source(self) -> Any:
        for src in getattr(self.sup, "sources", {}).values():
            if getattr(src.config, "type", "") == "givenergy":
                return src
        return None

    def snapshot(self) -> dict[str, Any] | None:
        src = self._source()
        if src is None or not src.client.plant.serial or src.last_reading is None:
            return None
        plant = src.client.plant
        if self._cache is None or self._cache[0] != plant.version:
            self._cache = (plant.version, snapshot(plant, layout=src.config.layout, raw=src.config.print_raw))
        snap = dict(self._cache[1])
        snap["online"] = src.client.connected
        return snap

    async def control(self, command: str, payload: Any) -> tuple[int, dict[str, Any]]:
        src = self._source()
        serial = src.client.plant.serial if src is not None else ""
        req = ControlRequest(serial, command, payload, origin="api")
        try:
            if hasattr(self.sup, "control") and serial:
                res = await self.sup.control(req)
            elif src is not None:
                res = await src.control(req)
            else:
                return 503, {"result": f"Setting {command} failed: no GivEnergy inverter configured"}
        except ControlError as e:
            return e.status, _control_error_body(command, e)
        return 200, {"result": res.message}


def _check_auth(request: Request, token: str) -> JSONResponse | None:
    if not token:
        return None
    got = request.headers.get("authorization", "")
    if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
        return JSONResponse({"result": "Error, missing or wrong bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return None


def build_router(backend: Backend, token: str = "") -> APIRouter:
    router = APIRouter()

    def make_get(key: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def get(request: Request) -> JSONResponse:
            denied = _check_auth(request, token)
            if denied is not None:
                return denied
            snap = backend.snapshot()
            if snap is None:
                return JSONResponse(NO_DATA, status_code=503)
            if not snap.get("online", True):
                return JSONResponse({"Result": "Error, inverter unreachable", "last_updated": snap.get("updated")},
                                    status_code=503)
            return JSONResponse(snap[key])
        return get

    for path, key in READ_ROUTES.items():
        router.add_api_route(f"/{path}", make_get(key), methods=["GET"], name=f"givtcp_{path}")

    def make_post(command: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def post(request: Request) -> JSONResponse:
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
            status, reply = await backend.control(command, payload)
            return JSONResponse(reply, status_code=status)
        return post

    for command in ge_controls.COMMANDS:
        router.add_api_route(f"/{command}", make_post(command), methods=["POST"], name=f"givtcp_{command}")
    return router


def create_router(supervisor: Any, api_config: Any = None) -> APIRouter:
    """Entry point for the daemon's API (see solarbridge.api.app)."""
    token = ""
    tok = getattr(api_config, "token", None)
    if tok is not None:
        token = tok.get_secret_value() if hasattr(tok, "get_secret_value") else str(tok)
    return build_router(SupervisorBackend(supervisor), token)


# --------------------------------------------------------------------------- standalone givtcp-rest


class SharedBackend(Backend):
    """One poller per state dir, whatever the number of worker processes."""

    def __init__(self, settings: Any, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.cache_file = state_dir / "givtcp-cache.json"
        self.lock_file = state_dir / "givtcp-rest.lock"
        self.sock_path = state_dir / "givtcp-control.sock"
        self.leader = False
        self._lock_fd: int | None = None
        self._source: Any = None
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
        cfg = self.settings.source_config()
        self._source = GivEnergySource(cfg, Context.standalone("givtcp", "source", "givenergy", self.state_dir))
        self._source.on_reading = lambda _r: self._write_snapshot()
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve_control, path=str(self.sock_path))
        os.chmod(self.sock_path, 0o600)
        self._tasks.append(asyncio.create_task(self._source.run(lambda _r: None)))
        self._tasks.append(asyncio.create_task(self._watch_online()))

    def _write_snapshot(self) -> None:
        from ..util.atomic import atomic_write

        src = self._source
        snap = snapshot(src.client.plant, layout=src.config.layout, raw=src.config.print_raw,
                        online=src.client.connected)
        self._mem = snap
        atomic_write(self.cache_file, json.dumps(snap), mode=0o600, fsync=False)

    async def _watch_online(self) -> None:
        last = None
        while True:
            await asyncio.sleep(0.5)
            online = self._source.client.connected
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
        if self._source is not None:
            await self._source.client.close()
            self._source = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: a follower takes over
            self._lock_fd = None
        self.leader = False

    # ---- data

    def snapshot(self) -> dict[str, Any] | None:
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

    async def control(self, command: str, payload: Any) -> tuple[int, dict[str, Any]]:
        if self.leader:
            return await self._local_control(command, payload)
        try:
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(str(self.sock_path)), 5)
        except (OSError, TimeoutError):
            return 503, {"result": f"Setting {command} failed: the poller is not running"}
        try:
            w.write(json.dumps({"command": command, "payload": payload}).encode() + b"\n")
            await w.drain()
            line = await asyncio.wait_for(r.readline(), 30)
            reply = json.loads(line)
            return int(reply["status"]), reply["body"]
        except (OSError, TimeoutError, ValueError, KeyError):
            return 503, {"result": f"Setting {command} failed: no answer from the poller"}
        finally:
            w.close()

    async def _local_control(self, command: str, payload: Any) -> tuple[int, dict[str, Any]]:
        try:
            res = await self._source.control(ControlRequest("", command, payload, origin="api"))
        except ControlError as e:
            return e.status, _control_error_body(command, e)
        return 200, {"result": res.message}

    async def _serve_control(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            line = await r.readline()
            req = json.loads(line)
            status, body = await self._local_control(str(req["command"]), req.get("payload"))
            w.write(json.dumps({"status": status, "body": body}).encode() + b"\n")
            await w.drain()
        except (ValueError, KeyError, OSError):
            pass
        finally:
            w.close()


def create_standalone_app(settings: Any, state_dir: Path, token: str = "") -> FastAPI:
    backend = SharedBackend(settings, state_dir)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.stop()

    app = FastAPI(title="givtcp-rest (solarbridge)", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.include_router(build_router(backend, token))
    app.state.backend = backend
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory (``--factory``) used by ``givtcp-rest``: settings come from the environment."""
    from ..sources.givenergy.settings import load_settings

    settings = load_settings()
    state_dir = Path(os.environ.get("GIVTCP_STATE_DIR") or settings.cache_location)
    return create_standalone_app(settings, state_dir, os.environ.get("GIVTCP_REST_TOKEN", ""))
