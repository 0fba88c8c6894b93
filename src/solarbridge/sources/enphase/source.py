"""The ``enphase`` source: the enphase-monitor engine, emitting canonical readings.

Each full poll and each grid change found by the fast relay check produces one
:class:`~solarbridge.model.Reading` for the gateway (PV, grid, load, battery, per phase
on three-phase and split-phase sites, relay, generator, token lifetime), with the meter
rows in ``extra`` (see :data:`~solarbridge.model.EXTRA_METER_ROWS`), then one per
microinverter and per battery. Gateway fields become canonical metrics through the
metric maps below. Lost comms (longer than ``outage_grace``) produce an ``online=False``
reading. ``enphase-monitor`` is this source feeding a ``nut`` sink.

Authentication (``auth``): gateways on firmware 7 and later want a JWT from Enphase's cloud as a
Bearer token; older ones take no token and protect part of their API with HTTP Digest auth (user
``envoy``, password the last 6 digits of the gateway serial). ``auto`` reads ``/info.xml`` (HTTPS,
else plain HTTP, which is all a legacy gateway speaks) and picks by its firmware; see
:class:`_GatewayAuth`. ``enphase-monitor`` stays token-only, like the original.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ...config import Secret
from ...metricmap import MetricDesc, apply, quantize
from ...model import EXTRA_METER_ROWS, EXTRA_PHASE_COUNT, DeviceInfo, MetricValue, Reading, utcnow
from ...plugin import Context, Emit, PluginConfig, Source
from . import jwt
from . import monitor as m
from .responses import INFO_PATH, firmware_major, parse_info
from .settings import LOGIN_URL, TOKENS_URL, Settings
from .site import SITE_PATHS, Flow, Site, enabled_meters, parse_site


class EnphaseConfig(PluginConfig):
    type: str = "enphase"
    host: str = Field("envoy.local", description="gateway host name or address (host:port allowed)")
    serial: str = Field(..., min_length=1, description="gateway serial number (for the token)")
    #: auto: by the firmware in /info.xml (before 7: digest, else token); token: the cloud JWT as a Bearer
    #: token (no probe, as before); digest: HTTP Digest auth, no token; none: no auth at all
    auth: Literal["auto", "token", "digest", "none"] = Field("auto", description="auto: token for firmware 7+, HTTP Digest before (docs/enphase.md)")
    username: str = Field("", description="Enlighten user (e-mail) for the token service; for a gateway "
                          "before firmware 7 a local user (envoy or installer) instead")
    password: Secret | None = None
    #: a long-lived owner token given directly; then no Enlighten login is made
    token: Secret | None = None
    token_file: str = Field("", description="token cache (default <state_dir>/enphase-<name>.token)")
    poll_interval: int = Field(60, ge=5, le=86400, description="seconds between full polls")
    alert_interval: int = Field(20, ge=5, le=86400, description="full-poll interval on battery or without comms")
    relay_interval: int = Field(2, ge=0, le=3600, description="fast grid check interval (0 = off)")
    api_timeout: int = Field(10, ge=2, le=300)
    login_timeout: int = Field(10, ge=5, le=300)
    disable_meters: bool = False
    login_url: str = LOGIN_URL
    tokens_url: str = TOKENS_URL
    #: CA file to trust for login_url/tokens_url (the simulator's certificate); default: system CAs
    cloud_ca: str = ""
    outage_grace: int = Field(180, ge=0, le=3600, description="seconds of gateway errors (the nightly nap) "
                              "before the gateway counts as offline (0 = at once, like enphase-monitor)")
    token_warn_days: int = Field(30, ge=0, le=365, description="warn this many days before the token expires")
    site_data: bool = Field(True, description="also read inverters, batteries, meters, relay and generator")

    @model_validator(mode="after")
    def _gateway_user(self) -> EnphaseConfig:
        user = self.username.strip()
        has_password = self.password is not None and bool(self.password.get_secret_value())
        if self.auth != "token" and user and "@" not in user and user != "envoy" and not has_password:
            raise ValueError(f"password: the gateway user {user!r} needs one (only 'envoy' has a default, the last"
                             " 6 digits of the serial; an Enlighten account is an e-mail address)")
        return self


class _LogReporter(m.Reporter):
    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self.log = log
        self.level = 1 if log.isEnabledFor(logging.DEBUG) else 0

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def debug(self, msg: str, level: int = 1) -> None:
        if level == 1:  # level 2+ would expose secrets
            self.log.debug(msg)

    def warn(self, msg: str) -> None:
        self.log.warning(msg)


class _GatewayAuth:
    """The token store the monitor asks, for ``auth`` other than ``token``: it reads ``/info.xml`` once
    (HTTPS, else plain HTTP) and then either hands out the cloud token (firmware 7 and later, through a
    :class:`~.monitor.TokenStore` made only then) or switches the gateway transport to a legacy login
    (Digest auth or none, no token, no cloud login ever). Until the gateway answers, nothing is decided
    and each poll asks again."""

    def __init__(self, source: EnphaseSource, gw: m.HttpGateway, make_store: Callable[[], m.TokenStore]) -> None:
        self.src, self.gw, self.make_store = source, gw, make_store
        self.mode: str | None = None  # "token", "digest" or "none" once decided
        self.store: m.TokenStore | None = None
        self.firmware: str | None = None
        self.user = ""
        #: where the digest password came from (for the one error on HTTP 401); never the password itself
        self.password_from = ""
        self._probe_warned = False

    @property
    def token(self) -> str | None:
        if self.mode == "token":
            return self.store.token if self.store is not None else None
        return "" if self.mode is not None else None

    @property
    def logins(self) -> int:
        return self.store.logins if self.store is not None else 0

    def invalidate(self) -> None:
        if self.store is not None:
            self.store.invalidate()

    async def get(self) -> str:
        if self.mode is None:
            await self._decide()
        if self.mode == "token":
            assert self.store is not None
            return await self.store.get()
        return ""

    async def _decide(self) -> None:
        c, log, name = self.src.config, self.src.ctx.log, self.src.ctx.name
        found = await self.gw.probe(INFO_PATH)
        if found is None:
            if not self._probe_warned:
                self._probe_warned = True
                log.warning("source %s: the gateway at %s does not answer /%s over HTTPS or HTTP; its firmware "
                            "(and so its login) is decided once it does", name, c.host, INFO_PATH)
            return
        scheme, text = found
        self.firmware = parse_info(text)
        major = firmware_major(self.firmware)
        legacy = c.auth in ("digest", "none") or (major is not None and major < 7)
        if not legacy:
            self.store = self.make_store()  # may raise: no token and no Enlighten account configured
            self.mode = "token"
            log.info("source %s: gateway firmware %s: token auth", name, self.firmware or "unknown")
            return
        if c.auth == "none":
            self.mode = "none"
            self.gw.use_legacy(scheme)
            self._relay_optional()
            log.info("source %s: gateway firmware %s, over %s without a login (auth = none)", name,
                     self.firmware or "unknown", scheme.upper())
            return
        user, password = self._credentials(text)
        self.gw.use_legacy(scheme, user, password)
        self._relay_optional()
        self.mode = "digest"
        log.info("source %s: gateway firmware %s is before 7: no token, HTTP Digest auth over %s as user %r "
                 "(password: %s)", name, self.firmware or "unknown", scheme.upper(), user, self.password_from)

    def _relay_optional(self) -> None:
        if self.src.monitor is not None:
            self.src.monitor.relay_optional = True  # no Ensemble before firmware 7: no ivp/ensemble/relay

    def _credentials(self, info_text: str) -> tuple[str, str]:
        """The digest user and password: the config's local user, else envoy with the serial's last 6 digits.

        An Enlighten account (a user with an @) is never a gateway's local user, so it is left for the
        token service and the default ``envoy`` login is used."""
        c = self.src.config
        user = c.username.strip()
        password = c.password.get_secret_value() if c.password is not None else ""
        if user and "@" not in user and password:  # a local user other than envoy has one (EnphaseConfig)
            self.user = user
            self.password_from = "the config's password"
            return user, password
        sn = parse_site({"info": info_text}).serial
        where = "from the gateway's info.xml" if sn else "from the config's serial"
        serial = (sn or c.serial).strip()
        self.user = "envoy"
        self.password_from = f"the last 6 digits of the gateway serial, {where}"
        return "envoy", serial[-6:]

    def refused_message(self) -> str:
        """The one plain error for a legacy gateway that answered HTTP 401."""
        name = self.src.ctx.name
        if self.mode == "none":
            return (f"source {name}: the gateway (firmware {self.firmware or 'unknown'}) wants a login (HTTP 401) "
                    'but auth = "none"; use auth = "auto" or "digest"')
        return (f"source {name}: the gateway (firmware {self.firmware or 'unknown'}) refused the digest login for "
                f"user {self.user!r} (HTTP 401); the password was {self.password_from}. Set username and "
                "password in the config to the gateway's local login (user envoy or installer)")


class _StaticToken:
    """A 'cloud' that hands out the configured token (no Enlighten account needed)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def random_expiry(self) -> bool:
        return False

    async def session_id(self, username: str, password: str) -> str:
        return "static"

    async def token(self, session_id: str, serial: str, username: str) -> str:
        return self._token


def _meter_rows(mon: m.Monitor) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    if mon.net:
        rows["grid"] = [r.as_extra() for r in mon.net]
    if mon.total:
        rows["load"] = [r.as_extra() for r in mon.total]
    if mon.storage is not None:
        rows["battery"] = [mon.storage.as_extra()]
    return rows


def _runtime_s(soc: float, reserve: float, capacity_wh: float, load_w: float) -> int | None:
    """Seconds until the battery reaches its reserve at the present load (None without load)."""
    if load_w <= 0 or capacity_wh <= 0:
        return None
    return max(0, round((soc - reserve) / 100 * capacity_wh / load_w * 3600))


#: the gateway's canonical metrics from the site model's records (see site.py for where each comes from)
FLOW_MAP = (
    MetricDesc("pv_power_w", "production_w", resolution="0.001"),
    MetricDesc("pv_energy_total_wh", "production_wh", resolution="0.001"),
    MetricDesc("grid_power_w", "grid_w", resolution="0.001"),
    MetricDesc("grid_import_energy_total_wh", "grid_import_wh", resolution="0.001"),
    MetricDesc("grid_export_energy_total_wh", "grid_export_wh", resolution="0.001"),
    MetricDesc("load_power_w", "load_w", resolution="0.001"),
    MetricDesc("load_energy_total_wh", "load_wh", resolution="0.001"),
    MetricDesc("battery_power_w", "storage_w", resolution="0.001"),
    MetricDesc("grid_voltage_v", "grid_v", resolution="0.001"),
    MetricDesc("grid_frequency_hz", "grid_hz", resolution="0.001"),
)
#: livedata's instantaneous powers (W, from its mW), used where no meter gave the figure
LIVE_MAP = (
    MetricDesc("pv_power_w", "pv", resolution="0.001"),
    MetricDesc("battery_power_w", "storage", resolution="0.001"),
    MetricDesc("grid_power_w", "grid", resolution="0.001"),
    MetricDesc("load_power_w", "load", resolution="0.001"),
)
INVERTER_MAP = (
    MetricDesc("inverter_power_w", "lastReportWatts", resolution=1),
    MetricDesc("inverter_max_power_w", "maxReportWatts", resolution=1),
    MetricDesc("last_report_s", "lastReportDate", kind="int"),
)
BATTERY_MAP = (
    MetricDesc("battery_soc_pct", "soc", resolution=1),
    MetricDesc("battery_power_w", "power", resolution="0.001"),
    MetricDesc("battery_temperature_c", "temperature", resolution=1),
    MetricDesc("battery_capacity_wh", "capacity", resolution=1),
)


def _report_records(mon: m.Monitor) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """ivp/meters/reports (what enphase-monitor reads) as flat records for FLOW_MAP: (totals, per phase)."""
    rec: dict[str, Any] = {}
    phases: dict[str, dict[str, Any]] = {}
    rep = mon.reports if not mon.s.disable_meters else None
    if rep is None:
        return rec, phases
    three = mon.phase_count == 3
    for name, rows in (("production", rep.production), ("grid", mon.net), ("load", mon.total)):
        if rows:
            rec[f"{name}_w"] = rows[0].real_w or 0.0
            for n, row in enumerate(rows[1:4] if three else [], 1):
                phases.setdefault(f"_l{n}", {})[f"{name}_w"] = row.real_w or 0.0
    if mon.storage is not None:
        rec["storage_w"] = mon.storage.real_w or 0.0
    if mon.net:
        rec["grid_v"], rec["grid_hz"] = mon.net[0].voltage_v or None, mon.net[0].frequency_hz or None
        for n, row in enumerate(mon.net[1:4] if three else [], 1):
            phases.setdefault(f"_l{n}", {})["grid_v"] = row.voltage_v or None
    for key, field in (("production.whDlvdCum", "production_wh"), ("total-consumption.whDlvdCum", "load_wh"),
                       ("net-consumption.whDlvdCum", "grid_import_wh"),
                       ("net-consumption.whRcvdCum", "grid_export_wh")):
        if key in rep.energy:
            rec[field] = rep.energy[key]
    return rec, phases


def _site_records(site: Site) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The site's figures as flat records for the metric maps: (totals, per-phase records by suffix)."""
    rec: dict[str, Any] = {}
    phases: dict[str, dict[str, Any]] = {}
    for name, flow in (("production", site.production), ("grid", site.grid), ("load", site.load),
                       ("storage", site.storage)):
        if flow is None:
            continue
        rec[f"{name}_w"] = flow.watts
        for n, w in enumerate(flow.phases_w[:3], 1):
            phases.setdefault(f"_l{n}", {})[f"{name}_w"] = w
    metered = site.grid if site.grid is not None and site.grid.origin != "derived" else site.load
    if metered is not None:
        rec["grid_v"] = metered.voltage_v or None
        rec["grid_hz"] = metered.frequency_hz or None
        for n, v in enumerate(metered.phases_v[:3], 1):
            phases.setdefault(f"_l{n}", {})["grid_v"] = v or None
    if site.production is not None:
        rec["production_wh"] = site.production.lifetime_wh
    if site.grid is not None and site.grid.origin == "meter":
        rec["grid_import_wh"], rec["grid_export_wh"] = site.grid.lifetime_wh, site.grid.export_wh
    if site.load is not None and site.load.origin == "meter":
        rec["load_wh"] = site.load.lifetime_wh
    if site.storage is None:
        # no storage CT: the sum of every battery's own power (IQ Batteries, plus the AC Battery total)
        powers = [b.power_w for b in site.batteries if b.power_w is not None]
        if site.acb_total is not None and site.acb_total[1] is not None:
            powers.append(site.acb_total[1])
        if powers:
            rec["storage_w"] = sum(powers)
    return rec, phases


def _site_soc(site: Site) -> tuple[float | None, float | None]:
    """Capacity-weighted SOC of every battery (IQ Battery and AC Battery) and the total capacity in Wh."""
    units: list[tuple[Any, Any]] = [(b.soc_pct, b.capacity_wh) for b in site.batteries
                                     if b.soc_pct is not None and b.kind == "encharge"]
    acb = site.acb_total
    if acb is not None and acb[0] is not None:
        # the AC Batteries as one unit: production.json gives their SOC and the energy stored
        units.append((acb[0], acb[2] * 100 / acb[0] if acb[0] and acb[2] is not None else None))
    elif not units:
        units = [(b.soc_pct, b.capacity_wh) for b in site.batteries if b.soc_pct is not None]
    if not units:
        return None, None
    if all(c for _, c in units):
        cap = sum(c for _, c in units)  # type: ignore[misc]
        return quantize(sum(s * c for s, c in units) / cap, 1), cap  # type: ignore[operator]
    return quantize(sum(s for s, _ in units) / len(units), 1), None


def readings_metrics(mon: m.Monitor) -> tuple[dict[str, MetricValue], dict[str, Any]]:
    """Canonical metrics (and extras) from what the monitor last saw."""
    out: dict[str, MetricValue] = {}
    extra: dict[str, Any] = {}
    if mon.relay_present is not False:  # a gateway with no relay does not know the grid state
        out["grid_available"] = mon.state == "online"
        extra["mains_oper_state"] = "closed" if mon.state == "online" else "open"
    site = mon.site
    rows = _meter_rows(mon)
    phase_count = mon.phase_count
    if site is not None:
        # the daemon: meter rows from ivp/meters/readings where there are no reports, and per-line rows
        # for split-phase sites too (enphase-monitor shows only totals there)
        if not rows:
            rows = _site_meter_rows(mon, site)
        if site.phase_count in (2, 3) and phase_count != 3:
            phase_count = site.phase_count
    extra[EXTRA_METER_ROWS] = rows
    if phase_count is not None:
        extra[EXTRA_PHASE_COUNT] = phase_count
    if mon.soc is not None:
        out["battery_soc_pct"] = mon.soc
    if mon.capacity_wh is not None:
        out["battery_capacity_wh"] = mon.capacity_wh
    if site is not None and mon.soc is None:
        soc, cap = _site_soc(site)
        if soc is not None:
            out["battery_soc_pct"] = soc
        if cap is not None and mon.capacity_wh is None:
            out["battery_capacity_wh"] = cap
    if site is not None and not mon.capacity_wh and not site.batteries and site.acb_total is None:
        # no battery at all (livedata then says soc 0): no battery figures, so no false low-battery
        out.pop("battery_soc_pct", None)
        out.pop("battery_capacity_wh", None)
    if mon.reserve_pct is not None:
        out["battery_reserve_pct"] = mon.reserve_pct
    found: dict[str, MetricValue] = {}
    sources = [_report_records(mon)] + ([_site_records(site)] if site is not None else [])
    for rec, phases in sources:  # the meter reports (enphase-monitor's source) win over the site model
        for k, v in apply(FLOW_MAP, rec).items():
            found.setdefault(k, v)
        for suffix, prec in phases.items():
            for k, v in apply(FLOW_MAP, prec).items():
                found.setdefault(k + suffix, v)
    if mon.live is not None:  # livedata fills what no meter gave (no CTs, DISABLE_METERS)
        for k, v in apply(LIVE_MAP, mon.live.powers).items():
            found.setdefault(k, v)
    for k, v in found.items():
        if k.startswith(("pv_power_w", "load_power_w")) and isinstance(v, int | float) and v < 0:
            v = 0.0 if isinstance(v, float) else 0  # generation and consumption are >= 0
        out[k] = v
    if site is not None:
        if site.relay is not None:
            out["relay_state"] = site.relay  # the IQ System Controller's (or Collar's) mains relay
        if site.grid_mode is not None:
            out["grid_mode"] = site.grid_mode
        if site.consumption_ct is not None:
            out["consumption_ct"] = site.consumption_ct
        if site.generator is not None:
            out["generator_present"] = site.generator.present
            if site.generator.oper_state is not None:
                out["generator_running"] = site.generator.oper_state in ("close", "closed")
        out["inverter_count"] = len(site.inverters)
        out["battery_count"] = len(site.batteries)
    soc, cap, load = out.get("battery_soc_pct"), out.get("battery_capacity_wh"), out.get("load_power_w")
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (soc, cap, load)):
        reserve = mon.reserve_pct if mon.reserve_pct is not None else 10
        runtime = _runtime_s(float(soc), float(reserve), float(cap), float(load))  # type: ignore[arg-type]
        if runtime is not None:
            out["battery_runtime_s"] = runtime
    if mon.firmware:
        extra["firmware"] = mon.firmware
    return out, extra


def _site_meter_rows(mon: m.Monitor, site: Site) -> dict[str, list[dict[str, Any]]]:
    """Meter rows for UPS sinks from the site model, where the gateway has no ivp/meters/reports."""
    meters = enabled_meters(mon.site_docs)

    def row(r: dict[str, Any]) -> dict[str, Any]:
        return {"real_w": r.get("activePower"), "apparent_va": r.get("apparentPower"),
                "voltage_v": r.get("voltage"), "power_factor": r.get("pwrFactor"), "frequency_hz": r.get("freq")}

    def meter_rows(kind: str) -> list[dict[str, Any]] | None:
        if kind not in meters:
            return None
        r, _count, chans = meters[kind]
        return [row(r)] + [row(c) for c in chans]

    out: dict[str, list[dict[str, Any]]] = {}
    grid, load, storage = meter_rows("net-consumption"), meter_rows("total-consumption"), meter_rows("storage")
    derived = site.load if grid is not None else site.grid
    if grid is None and derived is not None and load is not None:
        grid = _derived_rows(load, derived)
    if load is None and grid is not None and site.load is not None:
        load = _derived_rows(grid, site.load)
    if grid is not None:
        out["grid"] = grid
    if load is not None:
        out["load"] = load
    if storage is not None:
        out["battery"] = storage[:1]
    else:
        rec, _ = _site_records(site)
        if rec.get("storage_w") is not None and grid:
            out["battery"] = [{"real_w": rec["storage_w"], "voltage_v": grid[0].get("voltage_v")}]
    return out


def _derived_rows(like: list[dict[str, Any]], flow: Flow) -> list[dict[str, Any]]:
    """Rows for a flow the gateway does not meter: its W, with the metered side's voltage and frequency."""
    watts = [flow.watts, *flow.phases_w]
    return [{"real_w": watts[i] if i < len(watts) else None, "voltage_v": r.get("voltage_v"),
             "frequency_hz": r.get("frequency_hz")} for i, r in enumerate(like)]


class EnphaseSource(Source):
    """The gateway as a source. The daemon builds it from :class:`EnphaseConfig`; ``enphase-monitor``
    hands it the original's settings, reporter and transports (``monitor_mode``) and feeds a ``nut`` sink."""

    Config = EnphaseConfig

    def __init__(self, config: EnphaseConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        c = config
        self.info = DeviceInfo(c.serial, "enphase_gateway", manufacturer="Enphase Energy", model="IQ Gateway",
                               serial=c.serial, name=f"IQ Gateway {c.serial}", source=ctx.name)
        self.monitor: m.Monitor | None = None
        self._emit: Emit | None = None
        self._mode: MonitorMode | None = None
        #: the fatal error that ended an enphase-monitor run
        self.fatal: m.Fatal | None = None
        self._devices: dict[str, DeviceInfo] = {}
        self._next_token_warning = 0.0
        #: the login error was logged (once per episode of HTTP 401s from a legacy gateway)
        self._refused_logged = False

    @classmethod
    def monitor_mode(cls, settings: Settings, ctx: Context, mode: MonitorMode) -> EnphaseSource:
        """The source as ``enphase-monitor`` runs it: its settings, transports, reporter and options."""
        cfg = EnphaseConfig.model_construct(type="enphase", name=ctx.name, serial=settings.serial,
                                            host=settings.envoy_host, disable_meters=settings.disable_meters)
        src = cls(cfg, ctx)
        src._mode = mode
        return src

    def devices(self) -> list[DeviceInfo]:
        return [self.info, *self._devices.values()]

    def _settings(self) -> Settings:
        c = self.config
        state = Path(self.ctx.state_dir)
        token_file = Path(c.token_file) if c.token_file else state / f"enphase-{self.ctx.name}.token"
        return Settings(
            ups=self.ctx.name, username=c.username, password=c.password.get_secret_value() if c.password else "",
            serial=c.serial, port_file=None, token_file=token_file, state_dir=state,
            envoy_host=c.host, pollfreq=c.poll_interval, pollfreqalert=c.alert_interval,
            relayfreq=c.relay_interval, api_timeout=c.api_timeout, login_timeout=c.login_timeout,
            disable_meters=c.disable_meters, login_url=c.login_url, tokens_url=c.tokens_url,
            cloud_verify=c.cloud_ca or True,
        )

    def _on_update(self, mon: m.Monitor) -> Awaitable[None] | None:
        if self._emit is None:
            return None
        h = self.ctx.health
        h.gauges["relay_checks"] = float(mon.relay_checks)
        now = utcnow()
        if mon.state == "nocomms":
            h.count("nocomms_polls")
            tokens = mon.tokens
            if isinstance(tokens, _GatewayAuth) and getattr(mon.gw, "auth_failed", False):
                h.count("login_refused")
                if not self._refused_logged:
                    self._refused_logged = True
                    h.last_error = tokens.refused_message()
                    self.ctx.log.error("%s", h.last_error)
            self._emit(Reading(self.info.device_id, self.info.device_type, now, {}, source=self.ctx.name,
                               info=self.info, online=False))
        else:
            self._refused_logged = False
            if mon.firmware:
                self.info.sw_version = mon.firmware
            metrics, extra = readings_metrics(mon)
            lifetime = self._token_lifetime(mon)
            if lifetime is not None:
                metrics["token_lifetime_s"] = lifetime
            h.ok()
            self._emit(Reading(self.info.device_id, self.info.device_type, now, metrics,
                               source=self.ctx.name, extra=extra, info=self.info))
            if mon.site is not None and self._mode is None:
                self._emit_devices(mon.site, now)
        return self._mode.after_emit() if self._mode is not None and self._mode.after_emit else None

    def _token_lifetime(self, mon: m.Monitor) -> int | None:
        """Seconds the token has left; a warning once a day from ``token_warn_days`` before expiry."""
        token = mon.tokens.token
        if token is None:
            return None
        try:
            left = int(jwt.expiry(token) - time.time())
        except jwt.TokenFormatError:
            return None
        warn_days = getattr(self.config, "token_warn_days", 30)
        if self._mode is None and left < warn_days * 86400 and time.monotonic() >= self._next_token_warning:
            self._next_token_warning = time.monotonic() + 86400
            renew = ("it is renewed automatically an hour before" if self.config.token is None else
                     "this is the configured token: get a new one from Enlighten and put it in the config")
            self.ctx.log.warning("source %s: the gateway token expires in %.1f days (%s)", self.ctx.name,
                                 left / 86400, renew)
        return left

    def _emit_devices(self, site: Site, now: Any) -> None:
        """One reading per microinverter and per battery (no cap on their number)."""
        assert self._emit is not None
        gw = self.info.device_id
        for inv in site.inverters:
            info = self._device(f"{inv.serial}", "enphase_inverter", "IQ Microinverter", inv.serial)
            rec = {"lastReportWatts": inv.watts, "maxReportWatts": inv.max_watts, "lastReportDate": inv.last_report}
            self._emit(Reading(info.device_id, info.device_type, now, apply(INVERTER_MAP, rec), source=self.ctx.name,
                               extra={"gateway": gw}, info=info))
        for b in site.batteries:
            model = "IQ Battery" if b.kind == "encharge" else "AC Battery"
            info = self._device(b.serial, "enphase_battery", model, b.serial)
            rec = {"soc": b.soc_pct, "power": b.power_w, "temperature": b.temperature_c, "capacity": b.capacity_wh}
            self._emit(Reading(info.device_id, info.device_type, now, apply(BATTERY_MAP, rec), source=self.ctx.name,
                               extra={"gateway": gw, "kind": b.kind}, info=info))

    def _device(self, device_id: str, device_type: str, model: str, serial: str) -> DeviceInfo:
        info = self._devices.get(device_id)
        if info is None:
            info = self._devices[device_id] = DeviceInfo(device_id, device_type, manufacturer="Enphase Energy",
                                                         model=model, serial=serial, name=f"{model} {serial}",
                                                         source=self.ctx.name)
        return info

    def _cloud(self, s: Settings, rep: m.Reporter) -> m.Cloud:
        c = self.config
        if c.token is not None:
            return _StaticToken(c.token.get_secret_value())
        if c.username and c.password is not None:
            return m.HttpCloud(s.login_url, s.tokens_url, s.login_timeout, s.cloud_verify, rep)
        raise ValueError(f"source {self.ctx.name}: the gateway wants a token (firmware 7 or later): set token, "
                         "or username and password of the Enlighten account")

    def make_monitor(self, emit: Emit) -> m.Monitor:
        """The engine, wired to ``emit`` (``run`` drives it; tests may poll it step by step)."""
        mode = self._mode
        tokens: Any
        if mode is None:
            s = self._settings()
            s.state_dir.mkdir(parents=True, exist_ok=True)
            rep: m.Reporter = _LogReporter(self.ctx.log)
            gateway: m.Gateway = m.HttpGateway(s.envoy_host, s.api_timeout, rep)
            if self.config.auth == "token":
                tokens = m.TokenStore(s.token_file, self._cloud(s, rep), s.username, s.password, s.serial, rep)
            else:
                def store() -> m.TokenStore:
                    return m.TokenStore(s.token_file, self._cloud(s, rep), s.username, s.password, s.serial, rep)

                assert isinstance(gateway, m.HttpGateway)
                tokens = _GatewayAuth(self, gateway, store)
        else:
            s, gateway, rep = mode.settings, mode.gateway, mode.reporter
            tokens = m.TokenStore(s.token_file, mode.cloud, s.username, s.password, s.serial, rep)
        self._emit = emit
        c = self.config
        self.monitor = m.Monitor(s, gateway, tokens, rep, on_update=self._on_update,
                                 charge_low=mode.charge_low if mode else None,
                                 site_paths=SITE_PATHS if mode is None and c.site_data else None,
                                 grace_s=s.outage_grace if mode is not None else c.outage_grace)
        return self.monitor

    async def run(self, emit: Emit) -> None:
        mode = self._mode
        mon = self.make_monitor(emit)
        try:
            if mode is None:
                await mon.run()
            else:
                await mon.run(single=mode.single, nocomms=mode.nocomms)
        except m.Fatal as e:
            if mode is None:
                raise RuntimeError(str(e)) from None
            self.fatal = e  # enphase-monitor exits with the original's message and code
        finally:
            self.ctx.health.gauges["gateway_requests"] = float(getattr(mon.gw, "requests", 0))
            await mon.aclose()


@dataclass
class MonitorMode:
    """What ``enphase-monitor`` gives the source: the original's settings, transports and options."""

    settings: Settings
    gateway: m.Gateway
    cloud: m.Cloud
    reporter: m.Reporter
    single: bool = False
    nocomms: bool = False
    #: awaited after each reading (the command waits for its port file to be written before the next poll)
    after_emit: Callable[[], Awaitable[None]] | None = None
    #: TEST mode: battery.charge.low as the port file has it
    charge_low: Callable[[], str | None] | None = None
