"""Real servers for tests: started from Debian packages on ephemeral loopback ports in temp dirs.

Each server object starts its process, waits for readiness, and is stopped by PID. When a test fails,
the logs of the servers it used are printed (see ``pytest_runtest_makereport`` in conftest.py).
A missing binary fails the test with the command that installs it; outside CI, set
``SOLARBRIDGE_SKIP_MISSING_SERVERS=1`` to skip instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = "sudo scripts/install-test-deps  (or: apt-get install -y {pkg})"

#: every server started in the current test, for log dumps on failure
ACTIVE: list[Server] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


Describe = str | Callable[[], str]


def _text(what: Describe) -> str:
    return what() if callable(what) else what


def _timed_out(timeout: float, what: Describe, last: object) -> TimeoutError:
    tail = f" (last: {last!r})" if last is not None else ""
    return TimeoutError(f"timed out after {timeout:.1f}s waiting for {_text(what)}{tail}")


def _stopped(what: Describe, why: object) -> AssertionError:
    reason = why if isinstance(why, str) else "stop_if held"
    return AssertionError(f"gave up waiting for {_text(what)}: {reason}")


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: Describe = "condition", *,
             interval: float = 0.03, ignore: tuple[type[BaseException], ...] = (),
             stop_if: Callable[[], object] | None = None) -> object:
    """Poll ``predicate`` until it returns a truthy value, which is returned; raise TimeoutError naming
    ``what``. Exceptions of the types in ``ignore`` count as "not yet" (e.g. an element not on a page yet);
    the last one is shown in the error. ``what`` may be a callable, called only to word a failure (e.g. to
    add a process's log tail). ``stop_if`` is asked after each "not yet": a truthy answer (a string is shown
    as the reason, e.g. "the daemon exited 2: <stderr>") fails at once with AssertionError instead of
    waiting out the timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as e:
            value, last = None, e
        if value:
            return value
        if stop_if is not None and (why := stop_if()):
            raise _stopped(what, why)
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, last)
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: Describe = "condition", *,
                         interval: float = 0.02, ignore: tuple[type[BaseException], ...] = (),
                         stop_if: Callable[[], object] | None = None) -> object:
    """:func:`wait_for` inside an event loop: sleeps with asyncio, and awaits a predicate's awaitable result
    (e.g. ``lambda: client.get(url)`` chained in an ``async def``)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
        except ignore as e:
            value, last = None, e
        if value:
            return value
        if stop_if is not None and (why := stop_if()):
            raise _stopped(what, why)
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, last)
        await asyncio.sleep(interval)


def finish(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[str | bytes, str | bytes]:
    """Wait for ``proc`` to end and return the rest of its piped stdout and stderr ("" when not piped).

    Use this, not ``proc.communicate(timeout=...)``, after reading lines with ``readline()``: communicate
    reads the pipes' file descriptors directly and silently drops what readline() had already buffered.
    On timeout the process is killed and ``subprocess.TimeoutExpired`` is raised.
    """
    import threading

    rest: dict[int, str | bytes] = {}

    def drain(i: int, f: object) -> None:
        rest[i] = f.read()  # type: ignore[attr-defined]  (buffered text first, then up to EOF)

    readers = [threading.Thread(target=drain, args=(i, f), daemon=True)
               for i, f in enumerate((proc.stdout, proc.stderr)) if f is not None]
    for t in readers:
        t.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        for t in readers:
            t.join(5)
    return rest.get(0, ""), rest.get(1, "")


def require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if path:
        return path
    msg = f"{binary} not found; install it with: {INSTALL_HINT.format(pkg=package)}"
    if os.environ.get("SOLARBRIDGE_SKIP_MISSING_SERVERS") and not os.environ.get("CI"):
        pytest.skip(msg)
    pytest.fail(msg, pytrace=False)


@dataclass
class Server:
    name: str
    dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _spawn(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{key}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.dir, env={**os.environ, **(env or {})}, start_new_session=True)
        log.close()
        self.procs[key] = proc
        return proc

    def _kill(self, key: str, timeout: float = 5.0, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(key, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    @property
    def pid(self) -> int:
        return next(iter(self.procs.values())).pid

    def alive(self, key: str | None = None) -> bool:
        proc = self.procs.get(key) if key else next(iter(self.procs.values()), None)
        return proc is not None and proc.poll() is None

    def logs(self) -> str:
        out = []
        for f in sorted(self.dir.glob("*.log")):
            text = f.read_text(errors="replace")[-4000:]
            out.append(f"----- {self.name} {f.name} -----\n{text}")
        return "\n".join(out)

    def stop(self) -> None:
        for key in list(self.procs):
            self._kill(key)


# ----------------------------------------------------------------------------- mosquitto


@dataclass
class Mosquitto(Server):
    port: int = 0
    host: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> Mosquitto:
        exe = require("mosquitto", "mosquitto")
        if not self.port:
            self.port = free_port()
        conf = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr", "log_type all"]
        if os.geteuid() == 0:
            conf.append("user root")  # else it drops to user mosquitto, which cannot enter /tmp/pytest-of-root
        if self.users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run([require("mosquitto_passwd", "mosquitto"), "-b", str(pw), user, password],
                               check=True, capture_output=True)
            conf += ["allow_anonymous false", f"password_file {pw}"]
        else:
            conf.append("allow_anonymous true")
        (self.dir / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self._spawn("mosquitto", [exe, "-c", str(self.dir / "mosquitto.conf")])
        wait_for(lambda: port_open(self.port) or not self.alive("mosquitto") and self._died(), 10,
                 what=f"mosquitto on port {self.port}")
        return self

    def _died(self) -> bool:
        raise RuntimeError(f"mosquitto exited at start:\n{self.logs()}")

    def kill9(self) -> None:
        self._kill("mosquitto", sig=signal.SIGKILL)


# ----------------------------------------------------------------------------- NUT


@dataclass
class Nut(Server):
    ups: str = "test"
    port_file: Path = Path()
    port: int = 0
    initial: str = "ups.status: OL\nbattery.charge: 100\n"

    def _env(self) -> dict[str, str]:
        d = str(self.dir)
        return {"NUT_CONFPATH": d, "NUT_STATEPATH": d, "NUT_ALTPIDPATH": d}

    def start(self) -> Nut:
        upsd = require("/lib/nut/upsd", "nut-server")
        require("/lib/nut/dummy-ups", "nut-server")
        require("upsc", "nut-client")
        os.chmod(self.dir, 0o755)
        if not self.port:
            self.port = free_port()
        if self.port_file == Path():
            self.port_file = self.dir / f"{self.ups}.dev"
        self.port_file = self.port_file.absolute()
        if self.initial is not None and not self.port_file.exists():
            self.port_file.write_text(self.initial)
        (self.dir / "ups.conf").write_text(
            f"maxretry = 3\n[{self.ups}]\n  driver = dummy-ups\n  port = {self.port_file}\n  desc = \"test\"\n")
        (self.dir / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {self.port}\nMAXAGE 15\n")
        users = self.dir / "upsd.users"
        users.write_text("[admin]\n  password = secret\n  actions = SET\n  instcmds = ALL\n")
        users.chmod(0o600)
        (self.dir / "nut.conf").write_text("MODE=standalone\n")
        self.start_driver()
        self._spawn("upsd", [upsd, "-u", "root", "-F"], env=self._env())
        wait_for(lambda: port_open(self.port), 10, what=f"upsd on port {self.port}")
        if self.port_file.exists():
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the driver has published its first data (status is no longer WAIT or an error)."""
        wait_for(lambda: (st := self.upsc("ups.status")) and st != "WAIT" and "rror" not in st
                 and not st.startswith("exit"), timeout, what="dummy-ups to publish data")

    def start_driver(self) -> None:
        """Start (or restart) dummy-ups; NUT 2.8.0's driver exits when its port file disappears."""
        self._kill("driver")
        sock = self.dir / f"dummy-ups-{self.ups}"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self._spawn("driver", ["/lib/nut/dummy-ups", "-a", self.ups, "-u", "root", "-F"], env=self._env())
        wait_for(lambda: sock.exists() or not self.alive("driver"), 10, what="dummy-ups socket")

    def stop_driver(self) -> None:
        self._kill("driver")

    def upsc(self, var: str | None = None) -> str:
        """``upsc ups@127.0.0.1:port [var]``; returns stdout, or the error text (e.g. 'Driver not connected')."""
        argv = ["upsc", f"{self.ups}@127.0.0.1:{self.port}"] + ([var] if var else [])
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if p.returncode != 0:
            return p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        return p.stdout.strip()

    def wait_value(self, var: str, expected: str, timeout: float = 8.0) -> str:
        return str(wait_for(lambda: self.upsc(var) == expected and expected, timeout,
                            what=lambda: f"upsc {var} == {expected!r} (now: {self.upsc(var)!r})"))

    def stop(self) -> None:
        self._kill("upsd")
        self._kill("driver")


# ----------------------------------------------------------------------------- carbon


@dataclass
class Carbon(Server):
    line_port: int = 0
    pickle_port: int = 0
    query_port: int = 0

    @property
    def storage(self) -> Path:
        return self.dir / "storage" / "whisper"

    def start(self) -> Carbon:
        exe = require("carbon-cache", "graphite-carbon")
        for attr in ("line_port", "pickle_port", "query_port"):
            if not getattr(self, attr):
                setattr(self, attr, free_port())
        d = self.dir
        (d / "log").mkdir(exist_ok=True)
        self.storage.mkdir(parents=True, exist_ok=True)
        (d / "carbon.conf").write_text(f"""[cache]
STORAGE_DIR = {d}/storage/
LOCAL_DATA_DIR = {d}/storage/whisper/
WHITELISTS_DIR = {d}/storage/lists/
LOG_DIR = {d}/log/
PID_DIR = {d}/
USER =
ENABLE_TAGS = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {self.line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {self.pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {self.query_port}
LOG_CREATES = True
""")
        (d / "storage-schemas.conf").write_text("[default]\npattern = .*\nretentions = 1s:1h,1m:7d,1h:5y\n")
        with contextlib.suppress(FileNotFoundError):
            (d / "carbon.pid").unlink()
        self._spawn("carbon", [exe, f"--config={d}/carbon.conf", f"--pidfile={d}/carbon.pid", "--nodaemon",
                               "start"])
        wait_for(lambda: port_open(self.line_port) and port_open(self.pickle_port), 20,
                 what="carbon-cache line and pickle ports")
        return self

    def wsp_path(self, metric: str) -> Path:
        return self.storage.joinpath(*metric.split(".")).with_suffix(".wsp")

    def fetch(self, metric: str, from_ts: int, until_ts: int | None = None) -> list[tuple[int, float]]:
        """Points stored for ``metric`` (non-empty only), read back with the whisper library."""
        import whisper

        path = self.wsp_path(metric)
        if not path.exists():
            return []
        (start, _end, step), values = whisper.fetch(str(path), from_ts, until_ts)
        return [(start + i * step, v) for i, v in enumerate(values) if v is not None]

    def wait_points(self, metric: str, from_ts: int, count: int, timeout: float = 15.0) -> list[tuple[int, float]]:
        return wait_for(lambda: (pts := self.fetch(metric, from_ts)) and len(pts) >= count and pts, timeout,
                        what=f"{count} point(s) of {metric} in whisper")  # type: ignore[return-value]


# ----------------------------------------------------------------------------- VictoriaMetrics


@dataclass
class Victoria(Server):
    http_port: int = 0
    graphite_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Victoria:
        exe = require("victoria-metrics", "victoria-metrics")
        if not self.http_port:
            self.http_port = free_port()
        if not self.graphite_port:
            self.graphite_port = free_port()
        self._spawn("vm", [exe, f"-storageDataPath={self.dir}/data", f"-httpListenAddr=127.0.0.1:{self.http_port}",
                           f"-graphiteListenAddr=127.0.0.1:{self.graphite_port}", "-search.latencyOffset=0s",
                           "-retentionPeriod=100y", "-loggerLevel=WARN"])
        wait_for(self._healthy, 20, what="victoria-metrics /health")
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def flush(self) -> None:
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).close()

    def export(self, match: str = '{__name__=~".+"}') -> list[dict]:
        """Series from /api/v1/export (values and timestamps in ms) after a force flush."""
        self.flush()
        data = urllib.parse.urlencode({"match[]": match}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/export", data=data, timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]

    def wait_series(self, match: str, predicate: Callable[[list[dict]], bool] | None = None,
                    timeout: float = 10.0) -> list[dict]:
        """Poll export until ``predicate(series)`` holds (default: any series); ingestion is buffered ~1 s."""
        pred = predicate or bool
        return wait_for(lambda: (s := self.export(match)) and pred(s) and s, timeout,
                        what=f"series matching {match}")  # type: ignore[return-value]


# ----------------------------------------------------------------------------- fixtures


def _make(cls: type, tmp_path_factory: pytest.TempPathFactory, name: str, **kw: object) -> Server:
    d = tmp_path_factory.mktemp(name)
    os.chmod(d, 0o755)
    srv = cls(name=name, dir=d, **kw)
    ACTIVE.append(srv)
    return srv


@contextlib.contextmanager
def _started(cls: type, tmp_path_factory: pytest.TempPathFactory, name: str,
             **kw: object) -> Iterator[Callable[..., Server]]:
    """A factory that makes and starts servers of ``cls``; every one it started is stopped on exit."""
    started: list[Server] = []

    def make(**more: object) -> Server:
        srv = _make(cls, tmp_path_factory, name, **{**kw, **more})
        started.append(srv)
        return srv.start()

    try:
        yield make
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Mosquitto]]:
    with _started(Mosquitto, tmp_path_factory, "mosquitto") as make:
        yield make


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory()


@pytest.fixture
def nut_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Nut]]:
    with _started(Nut, tmp_path_factory, "nut") as make:

        def make_nut(ups: str = "test", port_file: Path | None = None, initial: str | None = Nut.initial) -> Nut:
            # port_file is set after construction: Nut.start() turns the default Path() into <dir>/<ups>.dev
            return make(ups=ups, initial=initial, **({"port_file": Path(port_file)} if port_file else {}))

        yield make_nut


@pytest.fixture
def nut(nut_factory: Callable[..., Nut]) -> Nut:
    return nut_factory()


@pytest.fixture
def carbon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Carbon]:
    with _started(Carbon, tmp_path_factory, "carbon") as make:
        yield make()


@pytest.fixture
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victoria]:
    with _started(Victoria, tmp_path_factory, "victoria") as make:
        yield make()
