"""An inventory file: one row per device, expanded into ``[[sources]]`` tables.

CSV (a header row names the columns, in any order; ``#`` starts a comment line)::

    family,host,port,serial,name,site,options
    givenergy,10.1.0.11,8899,SA2114G001,,farm-a,poll_interval=10
    givenergy,10.1.0.12,,SA2114G002,barn,farm-a,poll_interval=10;batteries=0
    enphase,10.1.7.3,,122301234567,,school,username=me@example.org

TOML (``[[devices]]`` tables with the same keys; ``options`` is a table)::

    [[devices]]
    family = "givenergy"
    host = "10.1.0.11"
    options = { poll_interval = 10 }

Columns: ``family`` (required; see :data:`FAMILIES`), ``host``, ``port``, ``serial``, ``name`` (default
``<family>-<serial>`` or ``<family>-<host>-<port>``), ``site`` (a label grouping devices), ``options``
(any other key of the family's source, ``key=value`` pairs separated by ``;`` in CSV; values are read
as TOML values where they parse, e.g. ``10``, ``true``, ``"x"``, else as text).

Every row is checked against its family's source ``Config``, like a ``[[sources]]`` table, and every
bad row is reported as ``file:line: column: what is allowed``.

The device key, which sharding hashes, is ``<family>:<serial>`` when a serial is given (so a device
keeps its worker when its address changes), else ``<family>:<host>:<port>``.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..util.ports import tcp_port

#: families an inventory row may name -> which source key each address column fills
#: (None: the column is part of the device key only; "host:port": the port is appended to host)
FAMILIES: dict[str, dict[str, str | None]] = {
    "givenergy": {"host": "host", "port": "port", "serial": None},
    "enphase": {"host": "host", "port": "host:port", "serial": "serial"},
    "synthetic": {"host": None, "port": None, "serial": "device_id"},
}
COLUMNS = ("family", "host", "port", "serial", "name", "site", "options")
MAX_REPORTED = 50

_NAME_OK = re.compile(r"^[A-Za-z0-9_.:-]+$")
#: a site label becomes a [[sites]] name (see solarbridge.stages.sites)
_SITE_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_TOML_DEVICES = re.compile(r"^\s*\[\[\s*devices\s*\]\]")


@dataclass
class InventoryDevice:
    """One validated row."""

    line: int
    family: str
    key: str
    name: str
    host: str = ""
    port: int | None = None
    serial: str = ""
    site: str = ""
    #: the family's validated source Config (what a ``[[sources]]`` table would give)
    config: Any = None

    @property
    def shard_key(self) -> str:
        """What sharding hashes: the site, so that a site's devices share a worker; else the device key."""
        return f"site:{self.site}" if self.site else self.key


@dataclass
class Inventory:
    path: Path
    devices: list[InventoryDevice] = field(default_factory=list)



class InventoryError(ValueError):
    """Every bad row, one ``file:line: column: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more bad row(s)")
        super().__init__("\n".join(shown))
        self.problems = problems


def parse_options(text: str) -> dict[str, Any]:
    """``"a=1;b=x"`` -> ``{"a": 1, "b": "x"}``; values parse as TOML where they can."""
    out: dict[str, Any] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value pairs separated by ';' (got {part!r})")
        if key in out:
            raise ValueError(f"{key} is given twice")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, raw row) pairs from a CSV or TOML inventory."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError([f"{path}: no such file"]) from None
    except PermissionError:
        raise InventoryError([f"{path}: permission denied"]) from None
    except UnicodeDecodeError:
        raise InventoryError([f"{path}: not UTF-8 text"]) from None
    except OSError as e:
        raise InventoryError([f"{path}: cannot read: {e.strerror}"]) from None
    if path.suffix.lower() == ".toml":
        return _toml_rows(path, text)
    return _csv_rows(path, text)


def _toml_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InventoryError([f"{path}: not valid TOML: {e}"]) from None
    extra = sorted(set(doc) - {"devices"})
    if extra:
        raise InventoryError([f"{path}: {extra[0]}: unknown key (allowed: devices, as [[devices]] tables)"])
    devices = doc.get("devices", [])
    if not isinstance(devices, list):
        raise InventoryError([f"{path}: devices: must be an array of tables ([[devices]])"])
    headers = [n for n, line in enumerate(text.splitlines(), 1) if _TOML_DEVICES.match(line)]
    rows = []
    for i, dev in enumerate(devices):
        line = headers[i] if len(headers) == len(devices) else i + 1
        rows.append((line, dev if isinstance(dev, dict) else {"__not_a_table__": dev}))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    lines = text.splitlines()
    # the header is the first line that is neither blank nor a comment
    start = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), None)
    if start is None:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines[start:])), skipinitialspace=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as e:
        raise InventoryError([f"{path}:{start + 1}: not valid CSV: {e}"]) from None
    bad = [h for h in header if h not in COLUMNS]
    if bad:
        raise InventoryError([f"{path}:{start + 1}: unknown column {bad[0]!r} (allowed: {', '.join(COLUMNS)})"])
    if "family" not in header:
        raise InventoryError([f"{path}:{start + 1}: the header needs a family column"
                              f" (columns: {', '.join(COLUMNS)})"])
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InventoryError([f"{path}:{start + 1}: column {dup[0]!r} is given twice"])
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    for values in reader:
        line = start + reader.line_num
        if not values or not "".join(values).strip() or values[0].lstrip().startswith("#"):
            continue
        if len(values) > len(header):
            problems.append(f"{path}:{line}: {len(values)} fields but the header has {len(header)} columns"
                            f" (quote options that contain commas)")
            continue
        rows.append((line, {h: v.strip() for h, v in zip(header, values, strict=False) if v.strip()}))
    if problems:
        raise InventoryError(problems)
    return rows


def _default_name(family: str, host: str, port: int | None, serial: str) -> str:
    tail = serial or (f"{host}-{port}" if port else host)
    return f"{family}-{_NAME_UNSAFE.sub('_', tail).strip('_')}"


def load(path: Path, defaults: dict[str, dict[str, Any]] | None = None, taken_names: set[str] | None = None,
         source_table: dict[str, str] | None = None) -> Inventory:
    """Read and validate every row; raise :class:`InventoryError` listing every bad one."""
    from .. import registry
    from ..config import describe_validation_error

    defaults = defaults or {}
    table = source_table if source_table is not None else registry.SOURCES
    families = sorted(f for f in FAMILIES if f in table)
    inv = Inventory(path)
    problems: list[str] = []
    keys: dict[str, int] = {}
    names: dict[str, int] = {}
    taken = taken_names or set()
    models: dict[str, Any] = {}
    for line, raw in _read_rows(path):
        where = f"{path}:{line}"

        def bad(column: str, msg: str, where: str = where) -> None:
            problems.append(f"{where}: {column}: {msg}")

        if "__not_a_table__" in raw:
            problems.append(f"{where}: a device must be a table")
            continue
        unknown = sorted(set(raw) - set(COLUMNS))
        if unknown:
            bad(unknown[0], f"unknown key (allowed: {', '.join(COLUMNS)})")
            continue
        family = str(raw.get("family", "")).strip()
        if not family:
            bad("family", f"required (allowed: {', '.join(families)})")
            continue
        if family not in families:
            bad("family", f"unknown family {family!r} (allowed: {', '.join(families)})")
            continue
        columns = FAMILIES[family]
        host = str(raw.get("host", "")).strip()
        serial = str(raw.get("serial", "")).strip()
        site = str(raw.get("site", "")).strip()
        if site and not _SITE_OK.match(site):
            bad("site", f"1-64 letters, digits, _ . - starting with a letter or digit (got {site!r})")
            continue
        port: int | None = None
        port_raw = raw.get("port")
        if port_raw not in (None, ""):
            try:
                port = tcp_port(port_raw if isinstance(port_raw, int) else str(port_raw))
            except ValueError as e:
                bad("port", str(e))
                continue
        opts_raw = raw.get("options", {})
        if isinstance(opts_raw, str):
            try:
                options = parse_options(opts_raw)
            except ValueError as e:
                bad("options", str(e))
                continue
        elif isinstance(opts_raw, dict):
            options = dict(opts_raw)
        else:
            bad("options", "must be key=value pairs (CSV) or a table (TOML)")
            continue
        clash = sorted(set(options) & {"type", "name", *[v for v in columns.values() if v and ":" not in v]})
        if clash:
            bad("options", f"{clash[0]} is set by its own column, not in options")
            continue
        for col, value in (("host", host), ("port", port), ("serial", serial)):
            if value and col not in columns:
                bad(col, f"not used by family {family} (its columns: {', '.join(columns)})")
        if columns.get("host") and not host:
            bad("host", f"required for family {family} (the device's address)")
            continue
        name = str(raw.get("name", "")).strip() or _default_name(family, host, port, serial)
        if not _NAME_OK.match(name):
            bad("name", f"letters, digits and _ . : - only (got {name!r})")
            continue
        key = f"{family}:{serial}" if serial else f"{family}:{host}:{port or ''}"
        if key in keys:
            col = "serial" if serial else "host"
            bad(col, f"the same device as line {keys[key]} (device key {key!r})")
            continue
        if name in names:
            bad("name", f"{name!r} is already used on line {names[name]}")
            continue
        if name in taken:
            bad("name", f"{name!r} is already the name of a [[sources]] or [[sinks]] entry")
            continue
        src: dict[str, Any] = {"type": family, "name": name, **defaults.get(family, {}), **options}
        col_of: dict[str, str] = {}
        for col, value in (("host", host), ("serial", serial)):
            target = columns.get(col)
            if target and value:
                src[target] = value
                col_of[target] = col
        if port is not None:
            target = columns.get("port")
            if target == "host:port":
                src["host"] = f"{host}:{port}"
            elif target:
                src[target] = port
                col_of[target] = "port"
        if family not in models:
            models[family] = registry.load(table[family]).Config
        model = models[family]
        try:
            cfg = model.model_validate(src)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            top = first["loc"][0] if first["loc"] else ""
            if top in col_of:
                text = describe_validation_error(e, (), model)
                problems.append(f"{where}: {col_of[top]}{text[len(str(top)):]}")
            elif first["type"] == "extra_forbidden":
                allowed = sorted(set(model.model_fields) - {"type", "name"}
                                 - {t for t in columns.values() if t and ":" not in t})
                problems.append(f"{where}: options.{top}: unknown key for family {family}"
                                f" (allowed: {', '.join(allowed)})")
            elif top in options:
                problems.append(f"{where}: options.{describe_validation_error(e, (), model)}")
            elif top in defaults.get(family, {}):
                problems.append(f"{where}: inventory.defaults.{family}.{describe_validation_error(e, (), model)}")
            else:
                text = describe_validation_error(e, (), model)
                column = next((c for c, t in columns.items() if t == top), None)
                if first["type"] == "missing" and column:
                    text = f"{column}: required for family {family}"
                elif first["type"] == "missing":
                    text += " (give it in options or inventory.defaults)"
                problems.append(f"{where}: {text}")
            continue
        keys[key] = line
        names[name] = line
        inv.devices.append(InventoryDevice(line, family, key, name, host, port, serial, site, cfg))
    if problems:
        raise InventoryError(problems)
    return inv
