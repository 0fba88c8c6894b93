"""The ``enphase`` source: the enphase-monitor engine, emitting canonical readings.

Each full poll and each grid change found by the fast relay check produces one
:class:`~solarbridge.model.Reading` for the gateway (PV, grid, load, battery,
per phase on three-phase sites), with the meter rows in ``extra`` (see
:data:`~solarbridge.model.EXTRA_METER_ROWS`). Lost comms produce an
``online=False`` reading. ``enphase-monitor`` is this source feeding a ``nut`` sink.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from ...config import Secret
from ...model import EXTRA_METER_ROWS, EXTRA_PHASE_COUNT, DeviceInfo, MetricValue, Reading, utcnow
from ...plugin import Context, Emit, PluginConfig, Source
from . import monitor as m
from .responses import Reports
from .settings import LOGIN_URL, TOKENS_URL, Settings


class EnphaseConfig(PluginConfig):
    type: str = "enphase"
    host: str = Field("envoy.local", description="gateway host name or address (host:port allowed)")
    serial: str = Field(..., min_length=1, description="gateway serial number (for the token)")
    username: str = Field("", description="Enlighten user (e-mail) for the token service")
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


def readings_metrics(mon: m.Monitor) -> tuple[dict[str, MetricValue], dict[str, Any]]:
    """Canonical metrics (and extras) from what the monitor last saw."""
    out: dict[str, MetricValue] = {"grid_available": mon.state == "online"}
    extra: dict[str, Any] = {"mains_oper_state": "closed" if mon.state == "online" else "open",
                             EXTRA_METER_ROWS: _meter_rows(mon)}
    if mon.phase_count is not None:
        extra[EXTRA_PHASE_COUNT] = mon.phase_count
    if mon.soc is not None:
        out["battery_soc_pct"] = mon.soc
    if mon.capacity_wh is not None:
        out["battery_capacity_wh"] = mon.capacity_wh
    if mon.reserve_pct is not None:
        out["battery_reserve_pct"] = mon.reserve_pct
    rep: Reports | None = mon.reports if not mon.s.disable_meters else None
    three = mon.phase_count == 3

    def rows(metric: str, rws: list[Any] | None, clamp: bool = False) -> None:
        if not rws:
            return
        v = rws[0].real_w or 0.0
        out[metric] = max(v, 0.0) if clamp else v
        if three:
            for n, row in enumerate(rws[1:4], 1):
                w = row.real_w or 0.0
                out[f"{metric}_l{n}"] = max(w, 0.0) if clamp else w

    if rep is not None:
        rows("pv_power_w", rep.production, clamp=True)
        rows("grid_power_w", mon.net)
        rows("load_power_w", mon.total, clamp=True)
        if mon.storage is not None:
            out["battery_power_w"] = mon.storage.real_w or 0.0
        if mon.net:
            cum = mon.net[0]
            if cum.voltage_v:
                out["grid_voltage_v"] = cum.voltage_v
            if cum.frequency_hz:
                out["grid_frequency_hz"] = cum.frequency_hz
            if three:
                for n, row in enumerate(mon.net[1:4], 1):
                    if row.voltage_v:
                        out[f"grid_voltage_v_l{n}"] = row.voltage_v
        for key, metric in (("production.whDlvdCum", "pv_energy_total_wh"),
                            ("total-consumption.whDlvdCum", "load_energy_total_wh"),
                            ("net-consumption.whDlvdCum", "grid_import_energy_total_wh"),
                            ("net-consumption.whRcvdCum", "grid_export_energy_total_wh")):
            if key in rep.energy:
                out[metric] = rep.energy[key]
    live = mon.live
    if live is not None:
        # livedata fills what the meter reports did not give (no CTs, DISABLE_METERS)
        for key, metric in (("pv", "pv_power_w"), ("storage", "battery_power_w"), ("grid", "grid_power_w"),
                            ("load", "load_power_w")):
            if metric not in out and key in live.powers:
                w = live.powers[key]
                out[metric] = max(w, 0.0) if metric in ("pv_power_w", "load_power_w") else w
    soc, cap, load = out.get("battery_soc_pct"), out.get("battery_capacity_wh"), out.get("load_power_w")
    if all(isinstance(v, int | float) for v in (soc, cap, load)):
        reserve = mon.reserve_pct if mon.reserve_pct is not None else 10
        runtime = _runtime_s(float(soc), float(reserve), float(cap), float(load))  # type: ignore[arg-type]
        if runtime is not None:
            out["battery_runtime_s"] = runtime
    if mon.firmware:
        extra["firmware"] = mon.firmware
    return out, extra


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

    @classmethod
    def monitor_mode(cls, settings: Settings, ctx: Context, mode: MonitorMode) -> EnphaseSource:
        """The source as ``enphase-monitor`` runs it: its settings, transports, reporter and options."""
        cfg = EnphaseConfig.model_construct(type="enphase", name=ctx.name, serial=settings.serial,
                                            host=settings.envoy_host, disable_meters=settings.disable_meters)
        src = cls(cfg, ctx)
        src._mode = mode
        return src

    def devices(self) -> list[DeviceInfo]:
        return [self.info]

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
        if mon.state == "nocomms":
            h.count("nocomms_polls")
            self._emit(Reading(self.info.device_id, self.info.device_type, utcnow(), {}, source=self.ctx.name,
                               info=self.info, online=False))
        else:
            if mon.firmware:
                self.info.sw_version = mon.firmware
            metrics, extra = readings_metrics(mon)
            h.ok()
            self._emit(Reading(self.info.device_id, self.info.device_type, utcnow(), metrics,
                               source=self.ctx.name, extra=extra, info=self.info))
        return self._mode.after_emit() if self._mode is not None and self._mode.after_emit else None

    def _daemon_parts(self, s: Settings) -> tuple[m.Gateway, m.Cloud, m.Reporter]:
        rep = _LogReporter(self.ctx.log)
        c = self.config
        cloud: m.Cloud
        if c.token is not None:
            cloud = _StaticToken(c.token.get_secret_value())
        elif c.username and c.password is not None:
            cloud = m.HttpCloud(s.login_url, s.tokens_url, s.login_timeout, s.cloud_verify, rep)
        else:
            raise ValueError(f"source {self.ctx.name}: set token, or username and password")
        return m.HttpGateway(s.envoy_host, s.api_timeout, rep), cloud, rep

    def make_monitor(self, emit: Emit) -> m.Monitor:
        """The engine, wired to ``emit`` (``run`` drives it; tests may poll it step by step)."""
        mode = self._mode
        if mode is None:
            s = self._settings()
            s.state_dir.mkdir(parents=True, exist_ok=True)
            gateway, cloud, rep = self._daemon_parts(s)
        else:
            s, gateway, cloud, rep = mode.settings, mode.gateway, mode.cloud, mode.reporter
        tokens = m.TokenStore(s.token_file, cloud, s.username, s.password, s.serial, rep)
        self._emit = emit
        self.monitor = m.Monitor(s, gateway, tokens, rep, on_update=self._on_update,
                                 charge_low=mode.charge_low if mode else None)
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
