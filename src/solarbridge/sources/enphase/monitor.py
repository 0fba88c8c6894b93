"""The enphase-monitor engine: token, gateway polls and the fast relay check.

Shared by the ``enphase-monitor`` command and the daemon's ``enphase`` source.
Transports are small classes with ``get(path)`` (gateway) and ``session_id``/
``token`` (cloud); TEST mode swaps in :class:`CannedBackend`, so the engine is
the same in every mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import stat
import sys
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import quote_plus

from ...util.atomic import atomic_write
from . import jwt
from .responses import (
    INFO_PATH,
    LIVEDATA_PATH,
    RELAY_PATH,
    REPORTS_PATH,
    SECCTRL_PATH,
    LiveData,
    MeterRow,
    Number,
    Reports,
    parse_info,
    parse_livedata,
    parse_relay,
    parse_reports,
    parse_secctrl,
)
from .settings import Fatal, Settings
from .site import Site, parse_site

#: a cheap endpoint every firmware has, open without a login before firmware 7 (the relay-less liveness check)
ALIVE_PATH = "api/v1/production"


class Reporter:
    """Messages the way the original prints them (verbose, ``DEBUG<n>:`` lines, warnings)."""

    def __init__(self, ups: str = "", verbose: bool = False, debug: int = 0,
                 out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.ups, self.verbose, self.level = ups, verbose, debug
        self.out, self.err = out or sys.stdout, err or sys.stderr

    def info(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=self.err if self.level else self.out, flush=True)

    def debug(self, msg: str, level: int = 1) -> None:
        if self.level >= level:
            tag = "DEBUG: " if level == 1 else f"DEBUG{level}:"
            print(f"{tag} {msg}", file=self.err, flush=True)

    def warn(self, msg: str) -> None:
        print(f"enphase-monitor{' ' + self.ups if self.ups else ''}: {msg}", file=self.err, flush=True)


class Gateway(Protocol):
    async def get(self, path: str, token: str, retry: bool = True) -> str | None: ...
    def begin_poll(self) -> None: ...
    async def aclose(self) -> None: ...


class Cloud(Protocol):
    async def session_id(self, username: str, password: str) -> str: ...
    async def token(self, session_id: str, serial: str, username: str) -> str: ...
    def random_expiry(self) -> bool: ...


# --------------------------------------------------------------------------- real transports


class HttpGateway:
    """HTTPS to the gateway: self-signed certificate accepted, Bearer token, timeout, one retry.

    The daemon's source may switch it to a legacy gateway (firmware before 7) with :meth:`use_legacy`:
    then plain HTTP or HTTPS as the gateway answered, no token, and HTTP Digest auth (or none).
    """

    def __init__(self, host: str, timeout: float, reporter: Reporter | None = None) -> None:
        import httpx

        self.host = host
        self.base = f"https://{host}/"
        self.rep = reporter or Reporter()
        self.requests = 0
        self.failures = 0
        #: set when the gateway refused the token (HTTP 401): the monitor then logs in again
        self.unauthorized = False
        #: legacy gateways: set when a request of this poll was refused (HTTP 401) despite the digest login
        self.auth_failed = False
        self.bearer = True
        self._auth: Any = None
        self._client = httpx.AsyncClient(verify=False, timeout=timeout, follow_redirects=False)

    def use_legacy(self, scheme: str, username: str = "", password: str = "") -> None:
        """No token from now on; HTTP Digest auth with these credentials (none without a user)."""
        import httpx

        self.base = f"{scheme}://{self.host}/"
        self.bearer = False
        self._auth = httpx.DigestAuth(username, password) if username else None

    async def probe(self, path: str) -> tuple[str, str] | None:
        """(scheme, body) of ``path`` read without auth over HTTPS, else plain HTTP (gateways before
        firmware 7 have no HTTPS); None when neither answers 200."""
        import httpx

        for scheme in ("https", "http"):
            url = f"{scheme}://{self.host}/{path}"
            self.requests += 1
            try:
                resp = await self._client.get(url)
            except (httpx.HTTPError, OSError, ValueError) as e:
                self.rep.debug(f"{url}: {type(e).__name__}: {e}")
                continue
            if resp.status_code == 200 and resp.content:
                return scheme, resp.text
            self.rep.debug(f"{url}: HTTP {resp.status_code}")
        return None

    def begin_poll(self) -> None:
        self.auth_failed = False

    async def get(self, path: str, token: str, retry: bool = True) -> str | None:
        import httpx

        url = self.base + path
        self.rep.debug(f"curl to {url}")
        headers = {"Accept": "application/json"}
        if self.bearer:
            self.rep.debug(f"GET {url} Authorization: Bearer {token}", 2)
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(2 if retry else 1):
            self.requests += 1
            try:
                resp = await self._client.get(url, headers=headers, auth=self._auth)
            except (httpx.HTTPError, OSError, ValueError) as e:
                self.rep.debug(f"{url}: {type(e).__name__}: {e}" + (", retrying" if attempt == 0 and retry else ""))
                continue
            if resp.status_code >= 400:
                self.rep.debug(f"{url}: HTTP {resp.status_code}")
                if self.bearer:
                    self.unauthorized = self.unauthorized or resp.status_code == 401
                else:
                    self.auth_failed = self.auth_failed or resp.status_code == 401
                if resp.status_code < 500 and resp.status_code not in (408, 429):
                    break  # like curl --retry: only transient errors are retried
                continue
            if resp.content:
                return resp.text
            break
        self.failures += 1
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpCloud:
    """Enlighten login (form POST) and the Entrez token service (JSON POST); TLS verified."""

    def __init__(self, login_url: str, tokens_url: str, timeout: float, verify: str | bool = True,
                 reporter: Reporter | None = None) -> None:
        self.login_url, self.tokens_url = login_url, tokens_url
        self.timeout = timeout
        self.verify = verify
        self.rep = reporter or Reporter()

    def random_expiry(self) -> bool:
        return False

    async def _post(self, url: str, *, content: bytes, ctype: str) -> str | None:
        import httpx

        self.rep.debug(f"curl to {url}")
        try:
            verify: Any = self.verify
            if isinstance(verify, str):  # a CA file (the simulator's certificate)
                import ssl

                verify = ssl.create_default_context(cafile=verify)
            async with httpx.AsyncClient(verify=verify, timeout=self.timeout) as client:
                resp = await client.post(url, content=content,
                                         headers={"Content-Type": ctype, "Accept": "application/json"})
        except (httpx.HTTPError, OSError, ValueError) as e:
            self.rep.debug(f"{url}: {type(e).__name__}: {e}")
            return None
        if resp.status_code >= 400:
            self.rep.debug(f"{url}: HTTP {resp.status_code}")
            return None
        return resp.text

    async def session_id(self, username: str, password: str) -> str:
        body = f"user%5Bemail%5D={quote_plus(username)}&user%5Bpassword%5d={quote_plus(password)}"
        self.rep.debug(f"login body: {body}", 2)
        text = await self._post(self.login_url, content=body.encode(), ctype="application/x-www-form-urlencoded")
        if not text:
            raise Fatal(f"Enphase login failed for user {username}")
        self.rep.debug(f"session json: {text}", 2)
        return _session_from(text, username)

    async def token(self, session_id: str, serial: str, username: str) -> str:
        body = json.dumps({"session_id": session_id, "serial_num": serial, "username": username})
        text = await self._post(self.tokens_url, content=body.encode(), ctype="application/json")
        if not text or not text.strip():
            raise Fatal(f"Failed to acquire web_token for user {username}, serial# {serial}")
        return text.strip()


def _session_from(text: str, username: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    sid = doc.get("session_id") if isinstance(doc, dict) else None
    # unlike the original, a missing/null session_id is an error here (it sent "null" on)
    if sid is None or sid == "" or isinstance(sid, dict | list | bool):
        raise Fatal(f"Unable to retrieve session_id for user {username}")
    return str(sid)


# --------------------------------------------------------------------------- TEST mode


TEST_CYCLE = ("online", "nocomms", "online2", "onbatt", "lowbatt")


class CannedBackend:
    """The original's TEST mode: canned responses, the 5-step state cycle, random token expiry."""

    def __init__(self, test: dict[str, str], ups: str, reporter: Reporter | None = None,
                 rng: random.Random | None = None) -> None:
        self.t = test
        self.ups = ups
        self.rep = reporter or Reporter()
        self.step = -1  # "init"
        self.charge_low: str | None = None
        self.rng = rng or random.Random()
        self.requests = 0

    @property
    def cycle(self) -> str:
        return "init" if self.step < 0 else TEST_CYCLE[self.step % len(TEST_CYCLE)]

    def begin_poll(self) -> None:
        self.step += 1
        self.rep.debug(f"TEST_CYCLE: {self.cycle}")

    def random_expiry(self) -> bool:
        return self.rng.randrange(5) == 0

    def _fail(self, mode: str) -> None:
        self.rep.warn(f"Testing {mode} failure")

    async def session_id(self, username: str, password: str) -> str:
        text = self.t.get("TEST_SESS", "")
        if not text:
            self._fail("login")
            raise Fatal(f"Enphase login failed for user {username}")
        return _session_from(text, username)

    async def token(self, session_id: str, serial: str, username: str) -> str:
        text = self.t.get("TEST_TOKEN", "").strip()
        if not text:
            self._fail("tokens")
            raise Fatal(f"Failed to acquire web_token for user {username}, serial# {serial}")
        return text

    def _soc(self) -> str:
        cyc = self.cycle
        if cyc == "onbatt":
            return "90"
        if cyc == "lowbatt":
            low = _decimal(self.charge_low)
            return str(int(low // 1) - 1) if low is not None else "10"
        return "100"

    async def get(self, path: str, token: str, retry: bool = True) -> str | None:
        self.requests += 1
        if self.cycle == "nocomms":
            self.rep.warn("Testing nocomms")
            return None
        key, mode = {
            RELAY_PATH: ("TEST_RELAY", "relay"), LIVEDATA_PATH: ("TEST_LIVE", "live"),
            REPORTS_PATH: ("TEST_REPORTS", "reports"), SECCTRL_PATH: ("TEST_SECCTRL", "secctrl"),
            INFO_PATH: ("TEST_INFO", "info"),
        }.get(path, ("", ""))
        if not key:
            self.rep.warn(f"Unknown test url: {path}")
            return None
        text = self.t.get(key, "")
        if not text:
            self._fail(mode)
            return None
        relay = "open" if self.cycle in ("onbatt", "lowbatt") else "closed"
        return text.replace("@RELAY_STATE@", relay).replace("@BATT_SOC@", self._soc())

    async def aclose(self) -> None:
        pass


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        d = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return None
    return d if d.is_finite() and abs(d) < 10**15 else None


# --------------------------------------------------------------------------- token store


def _private_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o666 & ~mask) & ~0o007


class TokenStore:
    """The cached JWT: in memory, then the token file, then a fresh cloud login."""

    def __init__(self, path: Path, cloud: Cloud, username: str, password: str, serial: str,
                 reporter: Reporter | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path, self.cloud = path, cloud
        self.username, self.password, self.serial = username, password, serial
        self.rep = reporter or Reporter()
        self.clock = clock
        self.token: str | None = None
        self.logins = 0

    def _read_file(self) -> str | None:
        if not os.access(self.path, os.R_OK):
            return None
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o004:
            raise Fatal(f"World read permissions exist on token file {self.path}")
        if stat.S_IMODE(self.path.parent.stat().st_mode) & 0o002:
            raise Fatal(f"World write permissions on token directory {self.path.parent}")
        return self.path.read_text(errors="replace").strip() or None

    def _usable(self, token: str, cached: bool) -> bool:
        try:
            exp = jwt.expiry(token)
        except jwt.TokenFormatError as e:
            raise Fatal(str(e)) from None
        now = self.clock()
        if cached and self.cloud.random_expiry():
            exp = int(now)
        self.rep.debug(f"token expires: {exp} ({time.strftime('%c', time.localtime(exp))})")
        if exp >= now + jwt.MIN_LIFETIME_S:
            return True
        self.rep.info("Token expired" if exp <= now else "Token lifetime less than 1 hour")
        return False

    def _save(self, token: str) -> None:
        d = self.path.parent
        if not d.is_dir() or not os.access(d, os.W_OK):
            raise Fatal(f"Token directory '{d}' not writable")
        if stat.S_IMODE(d.stat().st_mode) & 0o002:
            raise Fatal(f"World write permissions on token directory {d}")
        try:
            atomic_write(self.path, token, mode=_private_mode())
        except OSError as e:
            raise Fatal(f"Unable to write token file '{self.path}': {e.strerror}") from None

    def invalidate(self) -> None:
        self.token = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def get(self) -> str:
        token = self.token or self._read_file()
        if token:
            try:
                ok = self._usable(token, cached=True)
            except Fatal:
                ok = False  # a corrupt cached token: fetch a new one
            if ok:
                self.token = token
                return token
            self.token = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        sid = await self.cloud.session_id(self.username, self.password)
        self.rep.debug(f"session_id: {sid}")
        token = await self.cloud.token(sid, self.serial, self.username)
        self.logins += 1
        try:
            ok = self._usable(token, cached=False)
        except Fatal:
            ok = False
        if not ok:
            raise Fatal(f"New token invalid, verify serial# {self.serial}")
        self._save(token)
        self.token = token
        return token


# --------------------------------------------------------------------------- the engine


class Monitor:
    """Token, polls and the fast relay check; what the gateway said is kept here and handed to ``on_update``.

    The values persist the way the original's do: the charge is dropped when livedata
    fails, the capacity is kept from the last livedata that had one, firmware, reserve
    and phase count are read once, and meter rows are kept when a reports call fails
    (a storage report missing from a good reply means no battery data).
    """

    def __init__(self, settings: Settings, gateway: Gateway, tokens: TokenStore,
                 reporter: Reporter | None = None, on_update: Callable[[Monitor], Any] | None = None,
                 charge_low: Callable[[], str | None] | None = None,
                 site_paths: dict[str, str] | None = None, grace_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.s = settings
        self.gw = gateway
        self.tokens = tokens
        self.rep = reporter or Reporter()
        self.on_update = on_update
        #: TEST mode only: battery.charge.low as the port file has it (the low-battery step goes one below)
        self.charge_low = charge_low
        self.state = "init"
        self.soc: Number | None = None
        self.capacity_wh: Number | None = None
        self.reserve_pct: Number | None = None
        self.firmware: str | None = None
        self.phase_count: int | None = None
        self.once_done = False
        self.info_text: str | None = None
        self.live: LiveData | None = None
        self.reports: Reports | None = None
        #: meter rows as last read: net (grid), total (load), storage cumulative (battery)
        self.net: list[MeterRow] = []
        self.total: list[MeterRow] = []
        self.storage: MeterRow | None = None
        self.relay_checks = 0
        self.relay_check_failures = 0
        #: daemon only: more responses read each full poll (name -> path) for the site model
        self.site_paths = dict(site_paths or {})
        self.site_docs: dict[str, str] = {}
        self.site: Site | None = None
        self._skip_until: dict[str, int] = {}
        self.polls = 0
        #: daemon only: lost comms count only after this many seconds (the gateway's nightly nap)
        self.grace_s = grace_s
        self.clock = clock
        self.failing_since: float | None = None
        self.riding_through = False
        #: daemon, legacy gateways: a gateway without a relay endpoint is judged by ALIVE_PATH instead
        self.relay_optional = False
        #: whether the gateway has answered ivp/ensemble/relay (None: not known yet)
        self.relay_present: bool | None = None

    # -- polling ---------------------------------------------------------------------------

    async def poll(self, nocomms: bool = False) -> str:
        """One full cycle (token, relay, livedata, once-only calls, meters), then publish."""
        self.gw.begin_poll()
        if isinstance(self.gw, CannedBackend) and self.charge_low is not None:
            self.gw.charge_low = self.charge_low()
        token = await self.tokens.get()
        state = "nocomms"
        if not nocomms:
            relay = None if self.relay_present is False else parse_relay(await self.gw.get(RELAY_PATH, token))
            if relay is None:
                if self.relay_present is not False:
                    self.rep.debug("relay call failed")
                if self.relay_optional and not getattr(self.gw, "auth_failed", False):
                    state = await self._relayless_state(token)
            else:
                if relay.warning:
                    self.rep.warn(relay.warning)
                state = relay.state
                self.relay_present = True
            self.rep.debug(f"relay state: {state}")
        if state != "nocomms":
            await self._details(token)
        auth_failed = bool(getattr(self.gw, "auth_failed", False))
        if auth_failed:
            state = "nocomms"  # a legacy gateway refused the digest login: no data, and no riding through
        if getattr(self.gw, "unauthorized", False):
            # the original keeps a refused token forever (nocomms until restarted); renew it instead
            self.gw.unauthorized = False  # type: ignore[attr-defined]
            self.rep.info("Gateway refused the token, logging in again at the next poll")
            self.tokens.invalidate()
        if (state == "nocomms" and not nocomms and self.grace_s > 0 and self.state in ("online", "onbatt")
                and not auth_failed):
            now = self.clock()
            if self.failing_since is None:
                self.failing_since = now
            if now - self.failing_since < self.grace_s:
                # a short burst of 5xx/timeouts: keep the last state, publish nothing new
                if not self.riding_through:
                    self.rep.info(f"gateway not answering, riding through for up to {self.grace_s:g} s")
                self.riding_through = True
                return self.state
        self.failing_since = None
        self.riding_through = False
        self.state = state
        self.rep.debug(f"current state: {state}")
        await self.publish()
        return state

    async def _relayless_state(self, token: str) -> str:
        """Daemon, legacy gateways only: a gateway without an IQ System Controller has no relay endpoint
        (firmware before 7 has none); it counts as online while its production endpoint answers."""
        if await self.gw.get(ALIVE_PATH, token, retry=False) is None:
            return "nocomms"
        if self.relay_present is None:
            self.rep.info("the gateway has no grid relay (no IQ System Controller): online while it answers,"
                          " grid state from the meters' voltage where there are any")
        self.relay_present = False
        return "online"

    async def _details(self, token: str) -> None:
        live = parse_livedata(await self.gw.get(LIVEDATA_PATH, token))
        self.live = live
        self.soc = live.soc if live else None  # the original drops the charge when livedata fails
        if live and live.capacity_wh is not None:
            self.capacity_wh = live.capacity_wh
        if not self.once_done:
            self.once_done = True
            self.info_text = await self.gw.get(INFO_PATH, token)
            fw = parse_info(self.info_text)
            if fw:
                self.firmware = fw
            restart = parse_secctrl(await self.gw.get(SECCTRL_PATH, token))
            if restart is not None:
                self.reserve_pct = restart
            self.phase_count = live.phase_count if live else None
        if not self.s.disable_meters:
            rep = parse_reports(await self.gw.get(REPORTS_PATH, token))
            if rep is not None:
                self.reports = rep
                if rep.net is not None:
                    self.net = rep.net
                if rep.total is not None:
                    self.total = rep.total
                self.storage = rep.storage
        else:
            self.net, self.total, self.storage = [MeterRow()], [MeterRow()], None
        if self.site_paths:
            await self._site(token)

    async def _site(self, token: str) -> None:
        self.polls += 1
        for name, path in self.site_paths.items():
            if self._skip_until.get(name, 0) > self.polls:
                continue
            text = await self.gw.get(path, token, retry=False)
            if text is None:
                # absent on this gateway (404) or failing: ask again in 10 polls, keep the last answer
                self._skip_until[name] = self.polls + 10
                continue
            self.site_docs[name] = text
        docs = dict(self.site_docs)
        for name, text in (("info", self.info_text),):
            if text:
                docs[name] = text
        self.site = parse_site(docs)

    async def relay_check(self) -> bool:
        """The fast outage check: one relay request with the token in memory; True on a state change.

        A failed fast check changes nothing (a single lost request must not hide the port
        file and stop dummy-ups); the full poll decides about lost comms.
        """
        token = self.tokens.token
        if token is None or self.state == "init" or self.relay_present is False:
            return False
        self.relay_checks += 1
        relay = parse_relay(await self.gw.get(RELAY_PATH, token, retry=False))
        if relay is None or relay.state == "nocomms":
            self.relay_check_failures += 1
            return False
        if relay.state == self.state:
            return False
        self.rep.debug(f"fast relay check: {self.state} -> {relay.state}")
        self.state = relay.state
        await self.publish()
        return True

    async def publish(self) -> None:
        """Hand the new values on; ``on_update`` may return an awaitable (waited for before the next poll)."""
        if self.on_update is not None:
            pending = self.on_update(self)
            if inspect.isawaitable(pending):
                await pending

    # -- loop ------------------------------------------------------------------------------

    def delay(self) -> int:
        alert = self.state in ("onbatt", "nocomms") or self.riding_through
        return self.s.pollfreqalert if alert else self.s.pollfreq

    async def run(self, single: bool = False, nocomms: bool = False) -> None:
        """Poll until cancelled (or once with ``single``/``nocomms``)."""
        while True:
            await self.poll(nocomms=nocomms)
            if single or nocomms:
                return
            delay = self.delay()
            self.rep.debug(f"delay: {delay}")
            deadline = time.monotonic() + delay
            freq = self.s.relayfreq
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if not freq:
                    await asyncio.sleep(left)
                    break
                await asyncio.sleep(min(freq, left))
                if deadline - time.monotonic() <= 0.05:
                    break
                if await self.relay_check():
                    break  # status changed: refresh charge and meters right away

    async def aclose(self) -> None:
        await self.gw.aclose()
