"""Run the web service inside the daemon's event loop.

``serve(supervisor, api_config)`` binds the listen address itself (so a bad
address or a port in use is one clear error, not uvicorn's ``sys.exit``), runs
uvicorn on that socket without touching signal handlers (the daemon owns
SIGINT/SIGTERM) and shuts down when the task is cancelled: live event streams
are ended first so shutdown never waits on an open browser tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

from ..util.ports import tcp_port

log = logging.getLogger("solarbridge.api")


def parse_listen(text: str, default_port: int = 8080) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":8080"``, ``"0.0.0.0"`` or ``"8080"`` -> (host, port)."""
    t = text.strip()
    if not t:
        raise ValueError("api.listen: empty (use host:port, e.g. 127.0.0.1:8080)")
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"api.listen: {text!r} is not host:port (IPv6 as [::1]:8080)")
    elif t.count(":") == 1:
        host, _, port_s = t.partition(":")
    elif t.isdigit():
        host, port_s = "127.0.0.1", t
    elif ":" in t:
        raise ValueError(f"api.listen: {text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    else:
        host, port_s = t, ""
    host = host or "0.0.0.0"
    if port_s:
        try:
            port = tcp_port(port_s, allow_zero=True)
        except ValueError as e:
            raise ValueError(f"api.listen: port {e}") from None
    else:
        port = default_port
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, token: Any) -> str:
    """The loud warning for a non-loopback listen address without a token ('' when none is due)."""
    if is_loopback(host) or token is not None:
        return ""
    return (f"!!! api: listening on {host}:{port}, which is NOT loopback, WITHOUT a token: anyone who can reach"
            " this address can send control commands to your devices. Set [api] token = {env = \"...\"}"
            " or listen on 127.0.0.1.")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket for ``host:port`` (raises OSError with the address in the message)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"api: cannot resolve listen address {host!r}: {e.strerror}") from None
    family, socktype, proto, _, addr = infos[0]
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets of that protocol, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socktype, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(256)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise OSError(f"api: cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{host}:{port}/"


def _uvicorn_server(app: Any) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the daemon handles signals
            yield

    # log_config=None: uvicorn's records go through the daemon's logging set-up (text or JSON), not its own
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=3, ws="none")
    return _Server(config)


class ApiServer:
    """The running web service: the main app and, if configured, the GivTCP-compatible listener."""

    def __init__(self, supervisor: Any, api_config: Any) -> None:
        self.sup = supervisor
        self.cfg = api_config
        self.urls: list[str] = []
        self.app: Any = None
        self._servers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from .app import create_app

        host, port = parse_listen(self.cfg.listen)
        warning = exposure_warning(host, port, self.cfg.token)
        if warning:
            log.warning(warning)
        sockets = [bind(host, port)]
        self.app = create_app(self.sup, self.cfg)
        apps = [self.app]
        if self.cfg.givtcp_listen:
            gapp = self._givtcp_app()
            if gapp is None:
                log.warning("api: givtcp_listen is set but no givenergy source / GivTCP routes are available")
            else:
                gh, gp = parse_listen(self.cfg.givtcp_listen, 6345)
                try:
                    sockets.append(bind(gh, gp))
                except OSError:
                    sockets[0].close()
                    raise
                apps.append(gapp)
        self.urls = [url_of(s) for s in sockets]
        for app, sock in zip(apps, sockets, strict=True):
            server = _uvicorn_server(app)
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name="api:uvicorn"))
        # wait until uvicorn accepts connections (or failed)
        while not all(s.started for s in self._servers):
            done = [t for t in self._tasks if t.done()]
            if done:
                await self.stop()
                done[0].result()
                raise RuntimeError("api: web server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("web service at %s", ", ".join(self.urls))

    def _givtcp_app(self) -> Any:
        from fastapi import FastAPI

        from .app import givtcp_router

        router = givtcp_router(self.sup, self.cfg)
        if router is None:
            return None
        app = FastAPI(title="solarbridge GivTCP-compatible API", docs_url=None, redoc_url=None)
        app.include_router(router)
        return app

    async def wait(self) -> None:
        """Return when a server task ends by itself (raising its error, if any)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()

    async def stop(self) -> None:
        if self.app is not None:
            self.app.state.broadcaster.close()
        for s in self._servers:
            s.should_exit = True
        if self._tasks:
            # asyncio.wait, not wait_for(gather(...)): a gather cancelled on timeout leaves a
            # "_GatheringFuture exception was never retrieved" behind at exit
            from ..util.aiorun import cancel_and_wait

            _, pending = await asyncio.wait(self._tasks, timeout=5)
            if pending:
                await cancel_and_wait(pending, 1.0)
            for t in self._tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    log.debug("api: web server ended with %s", t.exception())
        if self.app is not None:
            self.app.state.history.close()


async def serve(supervisor: Any, api_config: Any, *,
                on_ready: Callable[[list[str]], Any] | None = None) -> None:
    """Serve the API and dashboard until cancelled. ``on_ready`` gets the URLs once listening."""
    server = ApiServer(supervisor, api_config)
    await server.start()
    try:
        if on_ready is not None:
            res = on_ready(server.urls)
            if asyncio.iscoroutine(res):
                await res
        await server.wait()
    finally:
        await asyncio.shield(server.stop())
