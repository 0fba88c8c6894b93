"""The original capture tool's TOML config, read compatibly, plus three optional new keys.

::

    [pcap]
    device = "br0"                       # interface, or a capture file with file = true
    filter = "src host 192.168.0.201"    # optional BPF, used as (tcp) and (<filter>)
    file = false
    timezone = "Africa/Johannesburg"     # new: the dongle clock's zone (else capture time is used)
    layout = "auto"                      # new: "auto", 292 or 302

    state_dir = "/var/lib/sunsynk-capture"   # new: where sinks keep their spool

    [[influxdb2]]
    host = "http://localhost:8086"
    org = "home"
    bucket = "solar"
    token = "..."

    [[mqtt]]
    url = "mqtt://192.168.0.123:1883"
    username = "me"
    password = "secret"

Unknown keys are errors naming the key, as in the original (serde ``deny_unknown_fields``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from ...config import ConfigError, Secret, check_private, describe_validation_error, parse_toml, secret_paths
from ...util.timeparse import check_zone


def _layout(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Layout = Annotated[Literal["auto", "292", "302"], BeforeValidator(_layout)]


def check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    return check_zone(value)


class PcapSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(description="network interface to capture on, or a capture file when file = true")
    file: StrictBool = Field(False, description="device names a pcap/pcapng file (true or false)")
    filter: str | None = Field(None, description="BPF filter, combined as (tcp) and (<filter>)")
    timezone: str | None = Field(None, description="time zone of the dongle's clock; unset: capture time")
    layout: Layout = Field("auto", description="report layout: auto, 292 or 302")

    _tz = field_validator("timezone")(check_timezone)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class InfluxSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "http://localhost:8086"
    org: str
    token: Secret
    bucket: str


class MqttSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    username: str | None = None
    password: Secret | None = None


class CaptureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pcap: PcapSection
    influxdb2: list[InfluxSection] = Field(default_factory=list)
    mqtt: list[MqttSection] = Field(default_factory=list)
    state_dir: Path | None = Field(None, description="where sinks keep their spool (default: per-user state dir)")


def parse(raw: dict[str, Any], path: Path | None = None) -> CaptureConfig:
    prefix = f"{path}: " if path else ""
    try:
        return CaptureConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(prefix + describe_validation_error(e, (), CaptureConfig)) from None


def load(path: str | os.PathLike[str]) -> CaptureConfig:
    p = Path(path)
    raw = parse_toml(p)
    # a token or password in a file others can read is refused, as the daemon's config is (README)
    check_private(p, secret_paths(raw))
    return parse(raw, p)


def daemon_tables(cfg: CaptureConfig, name: str = "sunsynk") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same setup as daemon ``[[sources]]``/``[[sinks]]`` tables (validated by the daemon's loader)."""
    source: dict[str, Any] = {"type": "sunsynk_capture", "name": name, "device": cfg.pcap.device,
                              "file": cfg.pcap.file, "layout": cfg.pcap.layout}
    if cfg.pcap.filter is not None:
        source["filter"] = cfg.pcap.filter
    if cfg.pcap.timezone is not None:
        source["timezone"] = cfg.pcap.timezone
    sinks: list[dict[str, Any]] = []
    for i, ix in enumerate(cfg.influxdb2):
        sinks.append({"type": "influxdb2", "name": f"influxdb2-{i}", "schema": "sunsniff", "host": ix.host,
                      "org": ix.org, "bucket": ix.bucket, "token": ix.token.get_secret_value()})
    for i, mq in enumerate(cfg.mqtt):
        t: dict[str, Any] = {"type": "mqtt", "name": f"mqtt-{i}", "layout": "sunsniff", "url": mq.url}
        if mq.username is not None:
            t["username"] = mq.username
        if mq.password is not None:
            t["password"] = mq.password.get_secret_value()
        sinks.append(t)
    return source, sinks
