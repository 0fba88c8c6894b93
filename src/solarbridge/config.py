"""The daemon's TOML config: loading, validation with plain-language errors, secrets.

Layout::

    [daemon]
    state_dir = "/var/lib/solarbridge"

    [api]
    listen = "127.0.0.1:8080"

    [[sources]]
    type = "synthetic"

    [[sinks]]
    type = "mqtt"
    url = "mqtt://127.0.0.1:1883"
    password = { env = "MQTT_PASSWORD" }     # or { file = "/run/secrets/mqtt" }, or a literal

Every ``[[sources]]``/``[[sinks]]`` table is validated against its plugin's
``Config`` model (see :mod:`solarbridge.registry`). Any error becomes one
:class:`ConfigError` line naming the file, the key path and what is allowed.
"""

from __future__ import annotations

import os
import stat
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from . import registry
from .stages.counters import CounterOptions
from .stages.sites import SiteConfig, check_sites

#: overrides ``[daemon] state_dir`` (one directory per worker when workers share a config file)
ENV_STATE_DIR = "SOLARBRIDGE_STATE_DIR"
#: overrides ``[api] listen`` (likewise)
ENV_API_LISTEN = "SOLARBRIDGE_API_LISTEN"

#: keys whose literal values are secrets (masked in output, and the file must be private)
SECRET_KEYS = frozenset({"password", "token", "secret", "api_key", "client_secret", "key", "ha_token"})


class ConfigError(Exception):
    """A config problem, as one line for the user. The CLI prints it and exits with code 2."""

    exit_code = 2


def _resolve_secret(value: Any) -> Any:
    """A secret may be a literal, ``{env = "NAME"}`` or ``{file = "/path"}``."""
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"env"}:
            name = str(value["env"])
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return os.environ[name]
        if keys == {"file"}:
            path = Path(str(value["file"])).expanduser()
            try:
                st = path.stat()
                text = path.read_text()
            except OSError as e:
                raise ValueError(f"cannot read secret file {path}: {e.strerror}") from None
            if st.st_mode & 0o077:
                raise ValueError(
                    f"secret file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
                    f" fix with: chmod 600 {path}"
                )
            return text.strip()
        raise ValueError("a secret is a string, {env = \"NAME\"} or {file = \"/path\"}")
    return value


#: use this type for every password/token field of a plugin config
Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/solarbridge`` when that is set; else /var/lib/solarbridge for root (a system
    service) and ``~/.local/state/solarbridge`` for anyone else."""
    base = os.environ.get("XDG_STATE_HOME")
    if not base:
        if os.geteuid() == 0:
            return Path("/var/lib/solarbridge")
        base = str(Path.home() / ".local" / "state")
    return Path(base) / "solarbridge"


class DaemonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Field(default_factory=default_state_dir,
                            description="where sinks and sources keep files (history, spools, tokens)")
    history: StrictBool = Field(True, description="add the SQLite history sink when none is configured")
    shutdown_timeout: float = Field(8.0, gt=0, le=60, description="seconds to drain and flush on SIGTERM")
    backoff_initial: float = Field(1.0, gt=0, le=60, description="first restart delay after a failure (s)")
    backoff_cap: float = Field(60.0, gt=0, le=3600, description="longest restart delay (s)")
    shard: str = Field("", description="this worker's share of the sources, \"k/n\" (k = 0..n-1, or 'ordinal' for"
                       " a StatefulSet pod's ordinal); SOLARBRIDGE_SHARD wins (docs/fleet.md)")
    auto_sites: bool = Field(True, description="without [[sites]], publish each device with at least two power "
                             "flows as its own site:<device_id> (docs/sites-energy.md)")


class InventoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="CSV or TOML file of device rows (relative to the config file)")
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                description="per family: source keys applied to every row")


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = Field(False, description="serve the dashboard, REST API and /metrics")
    listen: str = Field("127.0.0.1:8080", description="host:port")
    givtcp_listen: str = Field("", description="also serve the GivTCP-compatible routes here (e.g. 127.0.0.1:6345)")
    token: Secret | None = Field(None, description="bearer token required by control routes")
    givtcp_token_reads: bool = Field(False, description="also require the token on the GivTCP read routes "
                                     "(GET /runAll ...); GivTCP's own clients read without one")
    cors_origins: list[str] = Field(default_factory=list, description="allowed CORS origins (default: none)")

    @field_validator("listen", "givtcp_listen")
    @classmethod
    def _address(cls, v: str, info: ValidationInfo) -> str:
        if v or info.field_name == "listen":
            from .api.server import parse_listen  # stdlib only: no web framework is imported here

            try:
                parse_listen(v)
            except ValueError as e:
                raise ValueError(str(e).removeprefix("api.listen: ")) from None
        return v


class Config(BaseModel):
    """The validated daemon config. ``sources``/``sinks`` hold each plugin's own Config instance."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    inventory: InventoryConfig | None = None
    counters: CounterOptions = Field(default_factory=CounterOptions,
                                     description="counter hygiene defaults; a source may override with counters = {...}")
    sites: list[SiteConfig] = Field(default_factory=list)
    sources: list[Any] = Field(default_factory=list)
    sinks: list[Any] = Field(default_factory=list)
    _path: Path | None = PrivateAttr(None)
    #: counter hygiene options of the sources that override [counters], by source name
    _source_counters: dict[str, CounterOptions] = PrivateAttr(default_factory=dict)
    #: this worker's shard (None: not sharded) and where it was set
    _shard: Any = PrivateAttr(None)
    _shard_from: str = PrivateAttr("")
    #: the loaded inventory (every row, all shards) and every source's device key
    _inventory: Any = PrivateAttr(None)
    _source_keys: dict[str, str] = PrivateAttr(default_factory=dict)
    #: sources of the config and inventory that other workers own
    _other_shards: int = PrivateAttr(0)
    _phases: dict[str, float] = PrivateAttr(default_factory=dict)

    def start_offset(self, name: str) -> float:
        """Seconds an inventory source waits before its first poll: its own phase within its poll interval.

        Derived from the source's name (stable across restarts and workers), so polls of a fleet are spread
        evenly over the interval instead of arriving in one burst.
        """
        if self._inventory is None or name not in self._phases:
            return 0.0
        return self._phases[name]

    @property
    def source_counters(self) -> dict[str, CounterOptions]:
        """Counter hygiene options of sources that override ``[counters]``, by name (others use ``counters``)."""
        return self._source_counters

    @property
    def shard(self) -> Any:
        """This worker's :class:`~solarbridge.fleet.shard.Shard`, or None when not sharded."""
        return self._shard

    @property
    def path(self) -> Path | None:
        """The file this config came from (None when built from data)."""
        return self._path


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _fmt_input(value: Any) -> str:
    if isinstance(value, dict | list):
        return ""
    text = repr(value)
    return f" (got {text[:60]})"


def describe_validation_error(err: ValidationError, prefix: tuple[Any, ...], model: type[BaseModel]) -> str:
    """One line for the first error: key path and what is allowed."""
    e = err.errors(include_url=False)[0]
    loc = prefix + tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
    etype = e["type"]
    if etype == "extra_forbidden":
        allowed = _allowed_keys(model, e["loc"][:-1])
        return f"{_loc(loc)}: unknown key (allowed: {', '.join(allowed)})"
    if etype == "missing":
        return f"{_loc(loc)}: required key is missing"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    # a validator's own message may already show the value ("unknown time zone 'Mars/X'"): never print it twice
    inp = e.get("input")
    shown = "(got " in msg or (isinstance(inp, str) and len(inp) > 0 and repr(inp) in msg)
    return f"{_loc(loc)}: {msg}{'' if shown else _fmt_input(e.get('input'))}"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        model_type = _model_in(field.annotation)
        if model_type is not None:
            current = model_type
    return sorted(getattr(current, "model_fields", {}))


def _model_in(ann: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, looking inside list[...], Annotated[...] and unions."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def secret_paths(node: Any, path: tuple[Any, ...] = ()) -> list[str]:
    """Key paths that hold literal secrets in the raw TOML."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in SECRET_KEYS and isinstance(v, str) and v:
                found.append(_loc(path + (k,)))
            else:
                found.extend(secret_paths(v, path + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found.extend(secret_paths(v, path + (i,)))
    return found


def check_private(path: Path, secret_keys: list[str]) -> None:
    """Refuse a file that holds secrets and is readable by group or others."""
    if not secret_keys:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path}: holds secrets ({', '.join(secret_keys[:3])}) but is readable by group or others"
            f" (mode {mode:04o}); fix with: chmod 600 {path}"
        )


def parse_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def validate_plugin(kind: str, index: int, raw: Any, table: dict[str, str]) -> Any:
    """Validate one ``[[sources]]``/``[[sinks]]`` entry against its plugin's Config model."""
    where = f"{kind}[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    type_ = raw.get("type")
    if type_ is None:
        raise ConfigError(f"{where}.type: required key is missing (allowed: {', '.join(sorted(table))})")
    if type_ not in table:
        raise ConfigError(f"{where}.type: unknown {kind[:-1]} type {type_!r} (allowed: {', '.join(sorted(table))})")
    try:
        cls = registry.load(table[type_])
    except ModuleNotFoundError as e:
        raise ConfigError(f"{where}.type: {type_!r} is not available in this installation ({e})") from None
    model = cls.Config
    for key, value in raw.items():
        # TOML has true and false; pydantic would also take "yes", "on" or 1 and hide a typo
        f = model.model_fields.get(key)
        if f is not None and f.annotation is bool and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: must be true or false (got {value!r})")
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, (kind, index), model)) from None
    return cfg


def default_names(configs: list[Any]) -> None:
    """Name every unnamed source and sink after its type: the first ``csv`` is ``csv``, the next ones
    ``csv2``, ``csv3`` (``influxdb2-2`` where the type ends in a digit), counted per type in file order.

    Spool, token and state files are named after these, so an entry keeps its name when entries of
    other types are added, removed or moved; names given explicitly are never reused.
    """
    taken = {c.name for c in configs if c.name}
    counts: dict[str, int] = {}
    for cfg in configs:
        if cfg.name:
            continue
        n = counts.get(cfg.type, 0)
        while True:
            n += 1
            sep = "-" if cfg.type[-1:].isdigit() else ""
            candidate = cfg.type if n == 1 else f"{cfg.type}{sep}{n}"
            if candidate not in taken:
                break
        counts[cfg.type] = n
        cfg.name = candidate
        taken.add(candidate)


def build(raw: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config`; errors raise :class:`ConfigError`."""
    prefix = f"{path}: " if path else ""
    try:
        head = {k: v for k, v in raw.items() if k not in ("sources", "sinks")}
        cfg = Config.model_validate(head)
    except ValidationError as e:
        raise ConfigError(prefix + describe_validation_error(e, (), Config)) from None
    overrides: dict[int, CounterOptions] = {}
    for key, table in (("sources", registry.SOURCES), ("sinks", registry.SINKS)):
        entries = raw.get(key, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{prefix}{key}: must be an array of tables ([[{key}]])")
        out = []
        for i, entry in enumerate(entries):
            try:
                if key == "sources" and isinstance(entry, dict) and "counters" in entry:
                    entry = dict(entry)
                    overrides[i] = _source_counters(i, entry.pop("counters"), cfg.counters)
                out.append(validate_plugin(key, i, entry, table))
            except ConfigError as e:
                raise ConfigError(prefix + str(e)) from None
        setattr(cfg, key, out)
    try:
        check_sites(cfg.sites)
    except ValueError as e:
        raise ConfigError(prefix + str(e)) from None
    default_names(cfg.sources + cfg.sinks)
    cfg._source_counters = {cfg.sources[i].name: opts for i, opts in overrides.items()}
    names = [c.name for c in cfg.sources + cfg.sinks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{prefix}name: {sorted(dup)[0]!r} is used twice; give each source and sink its own name")
    cfg._path = path
    _expand_fleet(cfg, path, set(names))
    return cfg


def _source_counters(index: int, raw: Any, defaults: CounterOptions) -> CounterOptions:
    """A source's ``counters``: ``false``/``true``, or a table overriding the ``[counters]`` defaults."""
    where = f"sources[{index}].counters"
    if isinstance(raw, bool):
        raw = {"enabled": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be true, false or a table such as {{ max_power_w = 6000 }}")
    try:
        return CounterOptions.model_validate({**defaults.model_dump(), **raw})
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, ("sources", index, "counters"), CounterOptions)) from None


def _expand_fleet(cfg: Config, path: Path | None, names: set[str]) -> None:
    """Add the inventory's sources, then keep only this worker's share (docs/fleet.md)."""
    from .fleet import inventory as inv_mod
    from .fleet import shard as shard_mod

    prefix = f"{path}: " if path else ""
    state_dir = os.environ.get(ENV_STATE_DIR, "").strip()
    if state_dir:
        # N workers sharing one config file on one host each need their own state (spool, tokens, history)
        cfg.daemon.state_dir = Path(state_dir).expanduser()
    listen = os.environ.get(ENV_API_LISTEN, "").strip()
    if listen:
        # N workers on one host each serve their API on their own port
        from .api.server import parse_listen

        try:
            parse_listen(listen)
        except ValueError as e:
            raise ConfigError(f"{ENV_API_LISTEN}: {str(e).removeprefix('api.listen: ')}") from None
        cfg.api.listen = listen
    try:
        cfg._shard, cfg._shard_from = shard_mod.resolve(cfg.daemon.shard, os.environ)
    except ValueError as e:
        where = "SOLARBRIDGE_SHARD" if os.environ.get(shard_mod.ENV_SHARD, "").strip() else "daemon.shard"
        raise ConfigError(f"{prefix}{where}: {e}") from None
    keys = {c.name: f"source:{c.name}" for c in cfg.sources}
    if cfg.inventory is not None:
        file = Path(cfg.inventory.file).expanduser()
        if not file.is_absolute() and path is not None:
            file = path.parent / file
        for family in cfg.inventory.defaults:
            if family not in inv_mod.FAMILIES:
                raise ConfigError(f"{prefix}inventory.defaults.{family}: unknown family"
                                  f" (allowed: {', '.join(sorted(inv_mod.FAMILIES))})")
        try:
            inv = inv_mod.load(file, cfg.inventory.defaults, names)
        except inv_mod.InventoryError as e:
            raise ConfigError(str(e)) from None
        cfg._inventory = inv
        from hashlib import blake2b

        for dev in inv.devices:
            cfg.sources.append(dev.config)
            keys[dev.name] = dev.shard_key
            interval = getattr(dev.config, "poll_interval", None) or getattr(dev.config, "interval", None) or 0
            frac = int.from_bytes(blake2b(dev.key.encode(), digest_size=4).digest(), "big") / 2**32
            cfg._phases[dev.name] = round(frac * min(float(interval), 300.0), 3)
    cfg._source_keys = keys
    if cfg._shard is not None:
        mine = [c for c in cfg.sources if cfg._shard.owns(keys[c.name])]
        cfg._other_shards = len(cfg.sources) - len(mine)
        cfg.sources = mine
    if cfg._inventory is not None:
        _inventory_sites(cfg)


def _inventory_sites(cfg: Config) -> None:
    """Each ``site`` label of the inventory is a site of its rows' sources (a [[sites]] table of the same
    name gains them). Sharding hashes the label, so a worker holds all of a site or none of it."""
    running = {c.name for c in cfg.sources}
    by_label: dict[str, list[str]] = {}
    for dev in cfg._inventory.devices:
        if dev.site and dev.name in running:
            by_label.setdefault(dev.site, []).append(dev.name)
    configured = {s.name: s for s in cfg.sites}
    for label, names in by_label.items():
        site = configured.get(label)
        if site is None:
            cfg.sites.append(SiteConfig(name=label, sources=names))
        else:
            site.sources = [*site.sources, *(n for n in names if n not in site.sources)]


def load(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    raw = parse_toml(p)
    check_private(p, secret_paths(raw))
    return build(raw, p)


def masked(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data with every secret replaced by ``***``."""

    def dump(model: BaseModel) -> dict[str, Any]:
        out = model.model_dump(mode="json", by_alias=True)  # SecretStr dumps as "**********"
        return out

    inv = cfg._inventory
    from_inventory = {d.name for d in inv.devices} if inv is not None else set()
    def source(model: BaseModel) -> dict[str, Any]:
        d = dump(model)
        opts = cfg.source_counters.get(d.get("name", ""))
        if opts is not None and opts != cfg.counters:
            d["counters"] = opts.model_dump(mode="json")
        return d

    out: dict[str, Any] = {
        "daemon": dump(cfg.daemon),
        "api": dump(cfg.api),
        "counters": dump(cfg.counters),
        "sites": [s.model_dump(mode="json") for s in cfg.sites],
        "sources": [source(s) for s in cfg.sources if s.name not in from_inventory],
        "sinks": [dump(s) for s in cfg.sinks],
    }
    if cfg.shard is not None:
        out["daemon"]["shard"] = cfg.shard.label
    if inv is not None:
        mine = {s.name for s in cfg.sources}
        out["inventory"] = {
            "file": str(inv.path),
            "devices": len(inv.devices),
            "this_worker": sum(1 for d in inv.devices if d.name in mine),
            "sites": len({d.site for d in inv.devices if d.site}),
            "rows": [{"line": d.line, "name": d.name, "family": d.family, "key": d.key, "site": d.site,
                      "this_worker": d.name in mine} for d in inv.devices],
        }
    return out
