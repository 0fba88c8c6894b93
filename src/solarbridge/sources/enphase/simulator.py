"""IQ Gateway simulator: the gateway's local HTTPS API plus a fake Enlighten login and token service.

``solarbridge simulate enphase`` runs it; tests and the demo start :class:`GatewaySimulator`
in-process. A self-signed certificate is generated at start. Scenario control:

* ``GET /_sim/state`` / ``POST /_sim/state`` with a JSON object of scenario fields
  (``{"grid": "off", "soc": 15}``), ``GET /_sim/stats`` (requests per path),
  ``POST /_sim/stats/reset``;
* or a script file of ``<seconds> key=value ...`` lines applied after start.

Failure modes per endpoint (``fail_relay=http500`` etc.): http500, http503, http401, html,
badjson, empty, missing, unknown, timeout, close.

Authentication is the firmware's. Firmware 7 and later (the live physics and the 7.x/8.x sets) serve
HTTPS and want the Bearer token the fake Enlighten issues (``/info.xml`` is open on every firmware).
A recorded set of firmware before 7 is a legacy gateway: plain HTTP, no token accepted, the public
endpoints (:data:`LEGACY_PUBLIC`) open to anyone and every other one answering 401 with an RFC 7616
Digest challenge (realm ``enphaseenergy.com``; user ``envoy`` with the last 6 digits of the gateway
serial; ``digest_algorithm`` picks MD5, MD5-sess, SHA-256 or SHA-256-sess). Such a gateway has no
relay, livedata, secctrl or meter reports: those answer 404 (nothing is made up for these sets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from . import jwt
from .digest import DigestRealm
from .responses import firmware_major
from .site import Site, parse_site, response_name

ENDPOINTS = {
    "/ivp/ensemble/relay": "relay",
    "/ivp/livedata/status": "livedata",
    "/ivp/meters/reports": "reports",
    "/ivp/ensemble/secctrl": "secctrl",
    "/info.xml": "info",
    "/info": "info",
    "/login/login.json": "login",
    "/tokens": "tokens",
}
FAIL_MODES = ("none", "http500", "http503", "http401", "html", "badjson", "empty", "missing", "unknown", "timeout", "close")
SITES = {"split": (2, 240.0), "three": (3, 230.0), "single": (1, 230.0)}
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "enphase"
#: what a gateway before firmware 7 answers without a login (everything else wants Digest auth)
LEGACY_PUBLIC = frozenset({"/info.xml", "/info", "/production.json", "/production", "/api/v1/production"})
#: every firmware answers /info.xml without a login (clients read the firmware there to pick the login)
INFO_PUBLIC = frozenset({"/info.xml", "/info"})
DIGEST_REALM = "enphaseenergy.com"
DIGEST_ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")
HTML_ERROR = b"<html><head><title>500 Internal Server Error</title></head><body>Error</body></html>"


class ScenarioError(ValueError):
    pass


@dataclass
class Scenario:
    grid: bool = True
    soc: float = 100.0
    capacity_wh: int = 5000
    soc_recovery_exit: int = 10
    pv_w: float = 2895.97
    load_w: float = 3069.39
    #: battery power while the grid is up (+ discharge, - charge); off-grid it covers load - pv
    battery_w: float = 0.0
    site: str = "split"
    frequency_hz: float = 60.0
    token_lifetime_s: int = 365 * 86400
    latency_s: float = 0.0
    username: str = ""
    password: str = ""
    serial: str = "202439990001"
    fail: dict[str, str] = field(default_factory=dict)
    #: tokens issued before this epoch are refused (401), like a revoked token
    revoked_before: float = 0.0
    #: legacy gateways (a recorded set before firmware 7): the Digest algorithm of the challenge
    digest_algorithm: str = "MD5"

    def set(self, key: str, value: Any) -> None:
        """Set one field from JSON or script text; raises ScenarioError naming field and range."""
        if key.startswith("fail_"):
            ep = key[5:]
            allowed_eps = {*ENDPOINTS.values(), "all", "recorded"}
            if ep not in allowed_eps:
                raise ScenarioError(f"{key}: unknown endpoint (allowed: {', '.join(sorted(allowed_eps))})")
            mode = str(value)
            if mode not in FAIL_MODES:
                raise ScenarioError(f"{key}: unknown failure mode {mode!r} (allowed: {', '.join(FAIL_MODES)})")
            if mode == "none":
                self.fail.pop(ep, None)
            else:
                self.fail[ep] = mode
            return
        if key == "revoke_tokens":
            self.revoked_before = time.time() + 1
            return
        if key == "grid":
            if isinstance(value, bool):
                self.grid = value
            elif str(value).lower() in ("on", "1", "true", "closed"):
                self.grid = True
            elif str(value).lower() in ("off", "0", "false", "open"):
                self.grid = False
            else:
                raise ScenarioError("grid: must be on or off")
            return
        if key == "site":
            if value not in SITES:
                raise ScenarioError(f"site: must be one of {', '.join(SITES)}")
            self.site = str(value)
            return
        ranges: dict[str, tuple[type, float, float]] = {
            "soc": (float, 0, 100), "capacity_wh": (int, 0, 1_000_000), "soc_recovery_exit": (int, 0, 100),
            "pv_w": (float, 0, 1e6), "load_w": (float, 0, 1e6), "battery_w": (float, -1e6, 1e6),
            "frequency_hz": (float, 40, 70), "token_lifetime_s": (int, -10**9, 10**10),
            "latency_s": (float, 0, 3600),
        }
        if key in ("username", "password", "serial"):
            setattr(self, key, str(value))
            return
        if key == "digest_algorithm":
            if value not in DIGEST_ALGORITHMS:
                raise ScenarioError(f"digest_algorithm: must be one of {', '.join(DIGEST_ALGORITHMS)}")
            self.digest_algorithm = str(value)
            return
        if key not in ranges:
            allowed = sorted([*ranges, "grid", "site", "username", "password", "serial", "revoke_tokens",
                              "digest_algorithm", "fail_<endpoint>"])
            raise ScenarioError(f"{key}: unknown field (allowed: {', '.join(allowed)})")
        typ, lo, hi = ranges[key]
        try:
            num = typ(float(value)) if typ is int else float(value)
        except (TypeError, ValueError):
            raise ScenarioError(f"{key}: must be a number from {lo:g} to {hi:g} (got {value!r})") from None
        if not lo <= num <= hi or num != num:
            raise ScenarioError(f"{key}: must be from {lo:g} to {hi:g} (got {value!r})")
        setattr(self, key, num)

    def update(self, patch: dict[str, Any]) -> None:
        for k, v in patch.items():
            self.set(k, v)

    # -- power flows ------------------------------------------------------------------------
    def flows(self) -> dict[str, float]:
        """pv, load, battery (+discharge), grid (+import) in W; off-grid the battery covers the gap."""
        pv, load = self.pv_w, self.load_w
        if self.grid:
            batt = self.battery_w if self.capacity_wh else 0.0
            grid = load - pv - batt
        else:
            batt = load - pv if self.capacity_wh and self.soc > 0 else 0.0
            if not self.capacity_wh or self.soc <= 0:
                load = pv = 0.0  # the house is dark
            grid = 0.0
        return {"pv": pv, "load": load, "battery": batt, "grid": grid}


# --------------------------------------------------------------------------- responses


def _row(watts: float, volts: float, pf: float, hz: float, wh: float) -> dict[str, Any]:
    va = abs(watts) / pf if pf else abs(watts)
    return {
        "currW": round(watts, 3), "actPower": round(watts, 3), "apprntPwr": round(va, 3),
        "reactPwr": round((va * va - watts * watts) ** 0.5 * -1, 3), "whDlvdCum": round(wh, 3),
        "whRcvdCum": 0.0, "varhLagCum": 0.0, "varhLeadCum": 0.0, "vahCum": round(wh * 1.1, 3),
        "rmsVoltage": round(volts, 3), "rmsCurrent": round(watts / volts if volts else 0.0, 3),
        "pwrFactor": round(pf if watts >= 0 else -pf, 2), "freqHz": hz,
    }


class Responses:
    """Builds gateway responses from a scenario, in the shapes the real gateway uses."""

    def __init__(self, sc: Scenario, fixture: Path | None = None) -> None:
        self.sc = sc
        #: a recorded set (tests/data/enphase/<set>/): response name -> body, served as recorded
        self.recorded: dict[str, bytes] = {}
        self.site: Site | None = None
        if fixture is not None:
            self.recorded = {p.name: p.read_bytes() for p in Path(fixture).iterdir()
                             if p.is_file() and p.name not in ("LICENSE", "PROVENANCE.md")}
            self.site = parse_site({k: v.decode("utf-8", "replace") for k, v in self.recorded.items()})
        data = DATA_DIR / "sim"
        self.info_tpl = (data / "info.xml").read_text()
        self.secctrl_tpl = json.loads((data / "secctrl.json").read_text())
        self.relay_tpl = json.loads((data / "relay.json").read_text())
        self.started = time.time()

    def recorded_livedata(self) -> dict[str, Any]:
        """livedata for a recorded set (none was recorded): SOC, capacity and phase count from the set."""
        site = self.site
        assert site is not None
        units = [b for b in site.batteries if b.soc_pct is not None]
        cap = sum(b.capacity_wh or 0 for b in units)
        soc = round(sum((b.soc_pct or 0) * (b.capacity_wh or 0) for b in units) / cap) if cap else 0
        return {"meters": {"last_update": int(time.time()), "soc": soc, "enc_agg_energy": cap,
                           "phase_count": 3 if site.phase_count == 3 else 0,
                           "is_split_phase": 1 if site.phase_count == 2 else 0}}

    def relay(self) -> dict[str, Any]:
        if "ivp_ensemble_relay" in self.recorded:
            doc = json.loads(self.recorded["ivp_ensemble_relay"])
            if self.sc.grid is False:  # the grid pulled by hand over a recorded relay
                doc["mains_oper_state"] = "open"
            return doc
        doc = dict(self.relay_tpl)
        state = "closed" if self.sc.grid else "open"
        doc["mains_oper_state"] = state
        doc["mains_admin_state"] = "closed"
        return doc

    def _lines(self) -> tuple[int, float]:
        return SITES[self.sc.site]

    def livedata(self) -> dict[str, Any]:
        sc = self.sc
        n, _ = self._lines()
        flows = sc.flows()

        def agg(w: float) -> dict[str, int]:
            mw = int(round(w * 1000))
            d = {"agg_p_mw": mw, "agg_s_mva": mw}
            for i, ph in enumerate("abc"):
                share = int(round(mw / n)) if i < n else 0
                d[f"agg_p_ph_{ph}_mw"] = share
                d[f"agg_s_ph_{ph}_mva"] = share
            return d

        soc = int(round(sc.soc)) if sc.capacity_wh else 0
        return {
            "connection": {"mqtt_state": "connected", "prov_state": "configured",
                           "auth_state": "ok", "sc_stream": "disabled"},
            "meters": {
                "last_update": int(time.time()), "soc": soc, "main_relay_state": 1, "gen_relay_state": 5,
                "backup_bat_mode": 2, "backup_soc": sc.soc_recovery_exit,
                "is_split_phase": 1 if sc.site == "split" else 0,
                "phase_count": 3 if sc.site == "three" else (1 if sc.site == "single" else 0),
                "enc_agg_soc": soc, "enc_agg_energy": sc.capacity_wh, "acb_agg_soc": 0, "acb_agg_energy": 0,
                "pv": agg(flows["pv"]), "storage": agg(flows["battery"]),
                "grid": agg(flows["grid"]), "load": agg(flows["load"]), "generator": agg(0.0),
            },
        }

    def reports(self) -> list[dict[str, Any]]:
        sc = self.sc
        n, volts = self._lines()
        flows = sc.flows()
        hz = sc.frequency_hz
        # split phase: the cumulative voltage is the L-L sum (~240 V) and the lines are ~120 V
        line_v = volts / 2 if sc.site == "split" else volts
        elapsed = time.time() - self.started

        def report(kind: str, watts: float, pf: float) -> dict[str, Any]:
            wh = abs(watts) * elapsed / 3600
            lines = [_row(watts / n, line_v, pf, hz, wh / n) for _ in range(n)]
            return {"createdAt": int(time.time()), "reportType": kind,
                    "cumulative": _row(watts, volts, pf, hz, wh), "lines": lines}

        out = [report("production", flows["pv"], 0.99), report("net-consumption", flows["grid"], 0.98),
               report("total-consumption", flows["load"], 0.82)]
        if sc.capacity_wh:
            out.append(report("storage", flows["battery"], 0.99))
        return out

    def secctrl(self) -> dict[str, Any]:
        doc = dict(self.secctrl_tpl)
        doc["soc_recovery_exit"] = self.sc.soc_recovery_exit
        doc["agg_soc"] = doc["ENC_agg_soc"] = int(round(self.sc.soc))
        doc["Enc_commissioned_capacity"] = doc["Max_energy"] = self.sc.capacity_wh
        return doc

    def info(self) -> str:
        import re

        return re.sub(r"<sn>[^<]*</sn>", f"<sn>{self.sc.serial}</sn>", self.info_tpl, count=1)


# --------------------------------------------------------------------------- TLS


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for envoy.local / localhost / 127.0.0.1 / ::1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envoy.local")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([
        x509.DNSName("envoy.local"), x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
    ])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "gateway-cert.pem", directory / "gateway-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


# --------------------------------------------------------------------------- server


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class GatewaySimulator:
    """The simulator as an object: ``await start()``, ``.port``, ``.scenario``, ``.stats``, ``await stop()``."""

    def __init__(self, scenario: Scenario | None = None, host: str = "127.0.0.1", port: int = 0,
                 fixture: Path | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.host, self.port = host, port
        self.stats: dict[str, int] = {}
        self.responses = Responses(self.scenario, fixture)
        site = self.responses.site
        if site is not None:
            # the recorded gateway's own serial (the token service checks it) and grid state
            self.scenario.serial = site.serial or self.scenario.serial
            self.scenario.grid = site.relay != "open"
        self.sessions: set[str] = set()
        major = firmware_major(site.firmware) if site is not None else None
        #: a gateway before firmware 7: plain HTTP and Digest auth instead of HTTPS and a token
        self.legacy = major is not None and major < 7
        self.digest = DigestRealm(DIGEST_REALM, self._digest_users, self.scenario.digest_algorithm)
        self._server: asyncio.AbstractServer | None = None
        self._dir: Path | None = None
        self.cert_path: Path | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"{'http' if self.legacy else 'https'}://{self.host}:{self.port}"

    @property
    def envoy_password(self) -> str:
        """The legacy gateway's password for user ``envoy``: the last 6 digits of its serial."""
        return self.scenario.serial[-6:]

    def _digest_users(self) -> dict[str, str]:
        return {"envoy": self.envoy_password}

    @property
    def login_url(self) -> str:
        return f"{self.url}/login/login.json?"

    @property
    def tokens_url(self) -> str:
        return f"{self.url}/tokens"

    async def start(self) -> GatewaySimulator:
        self._dir = Path(tempfile.mkdtemp(prefix="enphase-sim-"))
        self.cert_path, key_path = make_certificate(self._dir)
        ctx: ssl.SSLContext | None = None
        if not self.legacy:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert_path, key_path)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def write_monitor_config(self) -> Path:
        """An enphase-monitor config for this simulator (mode 600) and an empty port file, in its temp dir."""
        assert self._dir is not None
        sc = self.scenario
        conf = self._dir / "enphase-sim.conf"
        conf.write_text(f"USERNAME='{sc.username or 'sim@example.com'}'\nPASSWORD='{sc.password or 'sim'}'\n"
                        f"SERIAL={sc.serial}\nENVOY_HOST={self.host}:{self.port}\nSTATE_DIR={self._dir}\n"
                        "PORT_FILE=ups.dev\n")
        conf.chmod(0o600)
        (self._dir / "ups.dev").touch()
        return conf

    def issue_token(self, lifetime_s: int | None = None) -> str:
        now = int(time.time())
        life = self.scenario.token_lifetime_s if lifetime_s is None else lifetime_s
        return jwt.make({"aud": self.scenario.serial, "iss": "Entrez", "enphaseUser": "owner",
                         "exp": now + life, "iat": now, "jti": secrets.token_hex(8),
                         "username": self.scenario.username or "owner"})

    async def apply_script(self, text: str) -> None:
        """Run ``<seconds> key=value ...`` lines (seconds since the call), in order."""
        t0 = time.monotonic()
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            at, *pairs = line.split()
            try:
                when = float(at)
                patch = dict(p.split("=", 1) for p in pairs)
            except ValueError:
                raise ScenarioError(f"script line {lineno}: expected '<seconds> key=value ...'") from None
            await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
            try:
                self.scenario.update(patch)
            except ScenarioError as e:
                raise ScenarioError(f"script line {lineno}: {e}") from None

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            first = b""
            if self.legacy:
                # a client trying HTTPS first (a TLS ClientHello starts with 0x16): like a gateway with no
                # HTTPS port, refuse at once instead of waiting for a request line that never comes
                first = await reader.read(1)
                if not first or first == b"\x16":
                    return
            while True:
                req = await self._read_request(reader, first)
                first = b""
                if req is None:
                    break
                resp = await self._respond(req)
                if resp is None:  # "close": drop the connection without an answer
                    break
                status, ctype, body, *more = resp
                extra = "".join(f"{k}: {v}\r\n" for k, v in (more[0] if more else {}).items())
                head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\n{extra}\r\n")
                writer.write(head.encode() + body)
                await writer.drain()
                if req.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.LimitOverrunError,
                ValueError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): an idle keep-alive connection (a cancelled handler would be logged by asyncio as an error)
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader, first: bytes = b"") -> Request | None:
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        headers = {}
        for h in lines[1:]:
            if ":" in h:
                k, v = h.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > 1 << 20:
            raise ValueError("body too large")
        body = await reader.readexactly(length) if length else b""
        path, _, query = parts[1].partition("?")
        return Request(parts[0], path, query, headers, body)

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def _respond(self, req: Request) -> tuple[Any, ...] | None:
        if req.path.startswith("/_sim/"):
            return self._control(req)
        name = ENDPOINTS.get(req.path)
        rec = self.responses.recorded
        rname = response_name(req.path)
        if rec and rname in rec and (name is None or name in ("reports", "secctrl", "info")):
            name = "recorded"
        self._count(name if name and name != "recorded" else req.path)
        sc = self.scenario
        if sc.latency_s:
            await asyncio.sleep(sc.latency_s)
        if name is None:
            return 404, "text/html", b"<html><body>404 Not Found</body></html>"
        mode = sc.fail.get(name, "none")
        if mode == "none" and name not in ("login", "tokens"):
            mode = sc.fail.get("all", "none")  # the whole gateway (its nightly nap)
        if mode == "timeout":
            await asyncio.sleep(3600)
        if mode == "close":
            return None
        if mode == "http500":
            return 500, "text/html", HTML_ERROR
        if mode == "http503":
            return 503, "text/html", b"<html><body>503 Service Unavailable</body></html>"
        if mode == "http401":
            return 401, "application/json", b'{"message":"Unauthorized"}'
        if mode == "html":
            return 200, "text/html", b"<!DOCTYPE html><html><body><h1>Gateway busy</h1></body></html>"
        if mode == "empty":
            return 200, "application/json", b""
        if name in ("login", "tokens"):
            return self._cloud(name, req, mode)
        if self.legacy:
            self.digest.algorithm = sc.digest_algorithm
            if req.path not in LEGACY_PUBLIC:
                target = req.path + (f"?{req.query}" if req.query else "")
                verdict = self.digest.check(req.method, target, req.headers.get("authorization", ""))
                if verdict != "ok":
                    self._count("digest_challenged" if "authorization" not in req.headers else "digest_refused")
                    return (401, "text/html", b"<html><body>401 Unauthorized</body></html>",
                            {"WWW-Authenticate": self.digest.challenge(stale=verdict == "stale")})
        elif req.path not in INFO_PUBLIC and not self._authorized(req):
            return 401, "application/json", b'{"message":"Unauthorized","code":401}'
        if self.legacy and name in ("relay", "livedata", "secctrl", "reports"):
            # no Ensemble, livedata or meter reports before firmware 7: nothing is made up for these sets
            return 404, "application/json", b'{ "error" : "404 - Not Found" }'
        body: Any
        if name == "recorded":
            ctype = "application/xml" if rname == "info" else "application/json"
            return 200, ctype, rec[rname]
        if name == "livedata" and self.responses.site is not None:
            return 200, "application/json", json.dumps(self.responses.recorded_livedata()).encode()
        if name == "reports" and rec:
            return 404, "application/json", b'{"error":"404 - Not Found"}'
        if name == "info":
            text = self.responses.info()
            if mode in ("missing", "badjson"):
                text = text.replace("<software>", "<sw>").replace("</software>", "</sw>")
            return 200, "application/xml", text.encode()
        body = getattr(self.responses, name)()
        if mode == "missing":
            body = {} if isinstance(body, dict) else [{"reportType": "production"}]
        elif mode == "unknown" and name == "relay":
            body["mains_oper_state"] = "unknown"
        data = json.dumps(body).encode()
        if mode == "badjson":
            data = data[: len(data) // 2]
        return 200, "application/json", data

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        try:
            claims = jwt.payload(auth[7:].strip())
        except jwt.TokenFormatError:
            return False
        exp, iat = claims.get("exp"), claims.get("iat", 0)
        if not isinstance(exp, int | float) or exp <= time.time():
            return False
        return not (isinstance(iat, int | float) and iat < self.scenario.revoked_before)

    def _cloud(self, name: str, req: Request, mode: str) -> tuple[int, str, bytes]:
        sc = self.scenario
        if name == "login":
            if req.method != "POST":
                return 405, "text/html", b"method not allowed"
            form = parse_qs(req.body.decode("utf-8", "replace"))
            user = (form.get("user[email]") or [""])[0]
            pw = (form.get("user[password]") or [""])[0]
            if not user or (sc.username and user != sc.username) or (sc.password and pw != sc.password):
                return 401, "application/json", b'{"message":"Invalid email or password"}'
            if mode == "missing":
                return 200, "application/json", b'{"message":"success"}'
            sid = secrets.token_hex(16)
            self.sessions.add(sid)
            return 200, "application/json", json.dumps({"message": "success", "session_id": sid}).encode()
        try:
            doc = json.loads(req.body)
        except ValueError:
            return 400, "application/json", b'{"message":"bad json"}'
        if not isinstance(doc, dict) or doc.get("session_id") not in self.sessions:
            return 401, "application/json", b'{"message":"invalid session"}'
        if str(doc.get("serial_num")) != sc.serial:
            return 403, "application/json", b'{"message":"serial not owned"}'
        if mode == "missing":
            return 200, "text/plain", b"not-a-jwt"
        return 200, "text/plain", self.issue_token().encode()

    def _control(self, req: Request) -> tuple[int, str, bytes]:
        if req.path == "/_sim/stats":
            return 200, "application/json", json.dumps(self.stats).encode()
        if req.path == "/_sim/stats/reset" and req.method == "POST":
            self.stats.clear()
            return 200, "application/json", b"{}"
        if req.path == "/_sim/token" and req.method == "POST":
            q = parse_qs(req.query)
            life = int((q.get("lifetime") or [str(self.scenario.token_lifetime_s)])[0])
            return 200, "text/plain", self.issue_token(life).encode()
        if req.path == "/_sim/state":
            if req.method == "POST":
                try:
                    patch = json.loads(req.body or b"{}")
                    if not isinstance(patch, dict):
                        raise ScenarioError("body: must be a JSON object of scenario fields")
                    self.scenario.update(patch)
                except ValueError as e:
                    return 400, "application/json", json.dumps({"error": str(e)}).encode()
            return 200, "application/json", json.dumps(asdict(self.scenario)).encode()
        return 404, "application/json", b'{"error":"unknown control path"}'


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


# --------------------------------------------------------------------------- CLI


def _monitor_command() -> str:
    """How to run enphase-monitor from here: on PATH, beside this Python (a venv), or as a module."""
    if shutil.which("enphase-monitor"):
        return "enphase-monitor"
    beside = Path(sys.executable).parent / "enphase-monitor"
    if beside.exists():
        return str(beside)
    return f"{sys.executable} -m solarbridge.cli.enphase_monitor"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solarbridge simulate enphase",
                                description="Enphase IQ Gateway + Enlighten login/token simulator (HTTPS).")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    p.add_argument("--site", choices=sorted(SITES), default="split", help="meter layout (default split)")
    p.add_argument("--no-battery", action="store_true", help="no IQ Battery (capacity 0, no storage report)")
    p.add_argument("--soc", type=float, default=100.0)
    p.add_argument("--grid", choices=("on", "off"), default="on")
    p.add_argument("--capacity-wh", type=int, default=5000)
    p.add_argument("--token-lifetime", type=int, default=365 * 86400, help="seconds until issued tokens expire")
    p.add_argument("--serial", default="202439990001")
    p.add_argument("--username", default="", help="accept only this Enlighten user (default: anyone)")
    p.add_argument("--password", default="", help="accept only this password (default: any)")
    p.add_argument("--script", type=Path, help="scenario script: '<seconds> key=value ...' lines")
    p.add_argument("--fixture", type=Path, metavar="DIR",
                   help="serve a recorded gateway set (e.g. tests/data/enphase/8.3.5169_with_generator) instead of"
                        " the live physics; livedata and a missing relay are made up from the set")
    p.add_argument("--info-file", type=Path, help="write URLs, port and certificate path here as JSON")
    p.add_argument("--cert", type=Path, help="also copy the generated certificate (PEM) here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sc = Scenario(site=args.site, serial=args.serial, username=args.username, password=args.password)
    try:
        sc.update({"soc": args.soc, "grid": args.grid, "token_lifetime_s": args.token_lifetime,
                   "capacity_wh": 0 if args.no_battery else args.capacity_wh})
        script = args.script.read_text() if args.script else ""
    except (ScenarioError, OSError) as e:
        print(f"simulate enphase: {e}", file=sys.stderr)
        return 2
    if args.fixture is not None and not (args.fixture / "info").is_file():
        print(f"simulate enphase: --fixture {args.fixture}: not a recorded gateway set (no 'info' file in it)",
              file=sys.stderr)
        return 2

    from ...util.signals import StopSignals

    async def run() -> int:
        # handlers first: a SIGTERM right after the "enphase simulator on" line must still stop cleanly
        with StopSignals() as stop:
            return await serve(stop)

    async def serve(stop: StopSignals) -> int:
        sim = await GatewaySimulator(sc, args.host, args.port, fixture=args.fixture).start()
        assert sim.cert_path is not None
        if args.cert:
            shutil.copyfile(sim.cert_path, args.cert)
        info = {"url": sim.url, "port": sim.port, "login_url": sim.login_url, "tokens_url": sim.tokens_url,
                "control_url": f"{sim.url}/_sim/state", "cert": str(args.cert or sim.cert_path)}
        if args.info_file:
            from ...util.atomic import atomic_write

            atomic_write(args.info_file, json.dumps(info, indent=1) + "\n")
        print(f"enphase simulator on {sim.url} (gateway API, login {sim.login_url}, tokens {sim.tokens_url},"
              f" control {sim.url}/_sim/state)", flush=True)
        if sim.legacy:
            # enphase-monitor is token-only, like the original: a legacy gateway is for the daemon's source
            print(f"firmware {sim.responses.site.firmware if sim.responses.site else '?'} (before 7): plain HTTP,"
                  f" Digest auth as user envoy, password {sim.envoy_password} (the serial's last 6 digits);"
                  f" try: curl --digest -u envoy:{sim.envoy_password} {sim.url}/api/v1/production/inverters",
                  flush=True)
        else:
            conf = sim.write_monitor_config()
            print(f"try: SOLARBRIDGE_ENPHASE_LOGIN_URL='{sim.login_url}'"
                  f" SOLARBRIDGE_ENPHASE_TOKENS_URL='{sim.tokens_url}'"
                  f" SOLARBRIDGE_ENPHASE_CLOUD_CA='{sim.cert_path}' {_monitor_command()} -v -s -c '{conf}'",
                  flush=True)
        rc = 0
        script_task = asyncio.create_task(sim.apply_script(script)) if script else None
        try:
            waiters = [asyncio.create_task(stop.wait())] + ([script_task] if script_task else [])
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if script_task in done and script_task.exception():
                print(f"simulate enphase: {script_task.exception()}", file=sys.stderr)
                rc = 2
            elif script_task in done:
                await stop.wait()
        finally:
            for t in waiters:
                t.cancel()
            await sim.stop()
        return rc

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
