"""GivTCP settings from environment variables or a settings file, mapped onto daemon config tables.

Variables (as GivTCP's): INVERTOR_IP (several inverters: comma-separated, each ``host[:port]``), MQTT_OUTPUT, MQTT_ADDRESS, MQTT_PORT, MQTT_USERNAME,
MQTT_PASSWORD, MQTT_TOPIC, DEBUG, DEBUG_FILE_LOCATION, PRINT_RAW, INFLUX_OUTPUT, INFLUX_URL,
INFLUX_TOKEN, INFLUX_BUCKET, INFLUX_ORG, HA_OUTPUT, HA_URL, HA_TOKEN; plus solarbridge's own
INVERTOR_PORT, NUMBATTERIES, SELF_RUN_LOOP_TIMER, SELF_RUN_TIMER_FULL, GIVTCP_LAYOUT, CACHELOCATION.

A settings file (``GIVTCP_SETTINGS=/path`` or ``--settings``) holds the same names, as TOML, JSON or
``NAME=value`` lines; environment variables win over the file.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ...config import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class GivSettings:
    invertor_ip: str = ""
    invertor_port: int = 8899
    numbatteries: int | None = None
    self_run_loop_timer: float = 15.0
    self_run_timer_full: float = 120.0
    givtcp_layout: str = "v1"
    print_raw: bool = False
    debug: bool = False
    debug_file_location: str = ""
    cachelocation: str = ""
    mqtt_output: bool = False
    mqtt_address: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_topic: str = "GivEnergy"
    influx_output: bool = False
    influx_url: str = "http://127.0.0.1:8086"
    influx_token: str = ""
    influx_bucket: str = ""
    influx_org: str = ""
    ha_output: bool = False
    ha_url: str = ""
    ha_token: str = ""

    @property
    def cache_location(self) -> str:
        if self.cachelocation:
            return self.cachelocation
        from ...config import default_state_dir

        return str(default_state_dir() / "givtcp")

    # ------------------------------------------------------------------ mapping onto the daemon

    def inverters(self) -> list[tuple[str, int]]:
        """(host, port) of each inverter: INVERTOR_IP may list several, comma-separated, each ``host[:port]``."""
        out = []
        for item in self.invertor_ip.split(","):
            item = item.strip()
            if not item:
                continue
            host, sep, port = item.rpartition(":") if item.count(":") == 1 else ("", "", "")
            if not sep:
                out.append((item, self.invertor_port))
                continue
            try:
                p = int(port)
            except ValueError:
                raise ConfigError(f"INVERTOR_IP: {item!r}: the port must be a number") from None
            if not 1 <= p <= 65535:
                raise ConfigError(f"INVERTOR_IP: {item!r}: the port must be 1..65535 (got {p})")
            out.append((host, p))
        return out

    def source_table(self, index: int = 0) -> dict[str, Any]:
        """The ``givenergy`` source table of inverter ``index`` (0 = the first, named ``givtcp``)."""
        inverters = self.inverters()
        if not inverters:
            raise ConfigError("INVERTOR_IP: required (the dongle's IP address; try: solarbridge giv discover)")
        host, port = inverters[index]
        t: dict[str, Any] = {"type": "givenergy", "name": "givtcp" if index == 0 else f"givtcp{index + 1}",
                             "host": host, "port": port, "poll_interval": self.self_run_loop_timer,
                             "full_refresh_interval": self.self_run_timer_full, "layout": self.givtcp_layout,
                             "print_raw": self.print_raw}
        if self.numbatteries is not None:
            t["batteries"] = self.numbatteries
        return t

    def source_config(self, index: int = 0) -> Any:
        from ...config import validate_plugin
        from ...registry import SOURCES

        return validate_plugin("sources", index, self.source_table(index), SOURCES)

    def sink_tables(self) -> list[dict[str, Any]]:
        """Generic sinks for MQTT_OUTPUT / INFLUX_OUTPUT / HA_OUTPUT (the daemon's [[sinks]] tables)."""
        out: list[dict[str, Any]] = []
        if self.mqtt_output:
            t: dict[str, Any] = {"type": "mqtt", "name": "givtcp-mqtt",
                                 "url": f"mqtt://{self.mqtt_address}:{self.mqtt_port}",
                                 "layout": "givtcp", "givtcp_root": self.mqtt_topic.strip("/") or "GivEnergy"}
            if self.mqtt_username:
                t["username"] = self.mqtt_username
            if self.mqtt_password:
                t["password"] = self.mqtt_password
            out.append(t)
        if self.influx_output:
            out.append({"type": "influxdb2", "name": "givtcp-influx", "host": self.influx_url,
                        "org": self.influx_org, "bucket": self.influx_bucket, "token": self.influx_token})
        if self.ha_output:
            if not self.ha_url or not self.ha_token:
                raise ConfigError("HA_OUTPUT: needs HA_URL and HA_TOKEN (a long-lived access token)")
            out.append({"type": "ha_rest", "name": "givtcp-ha", "url": self.ha_url, "token": self.ha_token})
        return out


def _coerce(name: str, typ: Any, value: Any) -> Any:
    text = str(value).strip()
    t = str(typ)
    try:
        if t == "bool":
            if isinstance(value, bool):
                return value
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if t == "int":
            return int(text)
        if t == "int | None":
            return None if text == "" else int(text)
        if t == "float":
            v = float(text)
            if v <= 0:
                raise ValueError
            return v
    except ValueError:
        allowed = {"bool": "True/False", "int": "an integer", "int | None": "an integer",
                   "float": "a number > 0"}[t]
        raise ConfigError(f"{name.upper()}: must be {allowed} (got {value!r})") from None
    return text


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read settings file: {e.strerror}") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a JSON object")
        return data
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{n}: expected NAME=value")
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip().strip("\"'")
    return out


def load_settings(env: Mapping[str, str] | None = None, file: str | os.PathLike[str] | None = None) -> GivSettings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = file or env.get("GIVTCP_SETTINGS")
    known = {f.name: f for f in fields(GivSettings)}
    if path:
        for k, v in _read_file(Path(path)).items():
            key = k.lower()
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {k!r} (allowed: {', '.join(n.upper() for n in known)})")
            values[key] = v
    for name in known:
        if name.upper() in env:
            values[name] = env[name.upper()]
    s = GivSettings()
    for name, v in values.items():
        setattr(s, name, _coerce(name, known[name].type, v))
    if s.givtcp_layout not in ("v1", "v3"):
        raise ConfigError(f"GIVTCP_LAYOUT: must be v1 or v3 (got {s.givtcp_layout!r})")
    if not 1 <= s.invertor_port <= 65535:
        raise ConfigError(f"INVERTOR_PORT: must be 1..65535 (got {s.invertor_port})")
    if s.numbatteries is not None and not 0 <= s.numbatteries <= 6:
        raise ConfigError(f"NUMBATTERIES: must be 0..6 (got {s.numbatteries})")
    return s
