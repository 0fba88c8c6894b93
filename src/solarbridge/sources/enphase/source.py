"""The daemon's ``enphase`` source: the same engine as enphase-monitor, emitting canonical readings.

Each full poll and each grid change found by the fast relay check produces one
:class:`~solarbridge.model.Reading` for the gateway (PV, grid, load, battery,
per phase on three-phase sites). Lost comms produce an ``online=False`` reading.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field

from ...config import Secret
from ...model import DeviceInfo, MetricValue, Reading, utcnow
from ...plugin import Context, Emit, PluginConfig, Source
from . import monitor as m
from .nut import generate
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


def readings_metrics(mon: m.Monitor) -> tuple[dict[str, MetricValue], dict[str, Any]]:
    """Canonical metrics (and extras) from what the monitor last saw."""
    i = mon.inputs
    out: dict[str, MetricValue] = {"grid_available": mon.state == "online"}
    extra: dict[str, Any] = {"mains_oper_state": "closed" if mon.state == "online" else "open"}
    if i.charge is not None:
        try:
            out["battery_soc_pct"] = float(i.charge)
        except ValueError:
            pass
    if i.capacity:
        try:
            out["battery_capacity_wh"] = float(i.capacity)
        except ValueError:
            pass
    rep: Reports | None = mon.reports if not mon.s.disable_meters else None
    three = i.phases == 3

    def rows(name: str, metric: str, rws: list[Any] | None, clamp: bool = False) -> None:
        if not rws:
            return
        v = rws[0].real_w or 0.0
        out[metric] = max(v, 0.0) if clamp else v
        if three:
            for n, row in enumerate(rws[1:4], 1):
                w = row.real_w or 0.0
                out[f"{metric}_l{n}"] = max(w, 0.0) if clamp else w

    if rep is not None:
        rows("production", "pv_power_w", rep.production, clamp=True)
        rows("net", "grid_power_w", rep.net)
        rows("total", "load_power_w", rep.total, clamp=True)
        if rep.storage is not None:
            out["battery_power_w"] = rep.storage.real_w or 0.0
        if rep.net:
            cum = rep.net[0]
            if cum.voltage_v:
                out["grid_voltage_v"] = cum.voltage_v
            if cum.frequency_hz:
                out["grid_frequency_hz"] = cum.frequency_hz
            if three:
                for n, row in enumerate(rep.net[1:4], 1):
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
    nut = generate(i)
    if "battery.runtime" in nut and "battery_soc_pct" in out:
        out["battery_runtime_s"] = int(nut["battery.runtime"])
    if i.restart:
        try:
            out["battery_reserve_pct"] = float(i.restart)
        except ValueError:
            pass
    if i.firmware:
        extra["firmware"] = i.firmware
    return out, extra


class EnphaseSource(Source):
    Config = EnphaseConfig

    def __init__(self, config: EnphaseConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        c = config
        self.info = DeviceInfo(c.serial, "enphase_gateway", manufacturer="Enphase Energy", model="IQ Gateway",
                               serial=c.serial, name=f"IQ Gateway {c.serial}", source=ctx.name)
        self.monitor: m.Monitor | None = None
        self._emit: Emit | None = None

    def devices(self) -> list[DeviceInfo]:
        return [self.info]

    def _settings(self) -> Settings:
        c = self.config
        state = Path(self.ctx.state_dir)
        token_file = Path(c.token_file) if c.token_file else state / f"enphase-{self.ctx.name}.token"
        return Settings(
            ups=self.ctx.name, username=c.username, password=c.password.get_secret_value() if c.password else "",
            serial=c.serial, port_file=state / "unused.dev", token_file=token_file, state_dir=state,
            envoy_host=c.host, pollfreq=c.poll_interval, pollfreqalert=c.alert_interval,
            relayfreq=c.relay_interval, api_timeout=c.api_timeout, login_timeout=c.login_timeout,
            disable_meters=c.disable_meters, login_url=c.login_url, tokens_url=c.tokens_url,
            cloud_verify=c.cloud_ca or True,
        )

    def _on_update(self, mon: m.Monitor) -> None:
        if self._emit is None:
            return
        h = self.ctx.health
        h.gauges["relay_checks"] = float(mon.relay_checks)
        if mon.state == "nocomms":
            h.count("nocomms_polls")
            self._emit(Reading(self.info.device_id, self.info.device_type, utcnow(), {}, source=self.ctx.name,
                               info=self.info, online=False))
            return
        if mon.inputs.firmware:
            self.info.sw_version = mon.inputs.firmware
        metrics, extra = readings_metrics(mon)
        h.ok()
        self._emit(Reading(self.info.device_id, self.info.device_type, utcnow(), metrics, source=self.ctx.name,
                           extra=extra, info=self.info))

    async def run(self, emit: Emit) -> None:
        s = self._settings()
        s.state_dir.mkdir(parents=True, exist_ok=True)
        rep = _LogReporter(self.ctx.log)
        c = self.config
        cloud: m.Cloud
        if c.token is not None:
            cloud = _StaticToken(c.token.get_secret_value())
        elif c.username and c.password is not None:
            cloud = m.HttpCloud(s.login_url, s.tokens_url, s.login_timeout, s.cloud_verify, rep)
        else:
            raise ValueError(f"source {self.ctx.name}: set token, or username and password")
        gateway = m.HttpGateway(s.envoy_host, s.api_timeout, rep)
        tokens = m.TokenStore(s.token_file, cloud, s.username, s.password, s.serial, rep)
        self._emit = emit
        self.monitor = m.Monitor(s, gateway, tokens, None, rep, on_update=self._on_update)
        try:
            await self.monitor.run()
        except m.Fatal as e:
            raise RuntimeError(str(e)) from None
        finally:
            self.ctx.health.gauges["gateway_requests"] = float(gateway.requests)
            await self.monitor.aclose()
