"""semonitor JSON lines -> device records, Graphite points, CSV rows and the se2state state file.

The logic behind ``se2state``, ``se2csv``, ``se2graphite`` and ``pickle2graphite``, kept free of
I/O so the commands stay thin and the rules can be tested on their own. Behaviour follows the
original jbuehl/solaredge conversion scripts; deliberate differences are marked "Differs:".

semonitor writes one JSON object per line, e.g.::

    {"events": {}, "inverters": {"7F104920": {"Date": "2017-11-19", "Time": "00:00:04", "Pac": 0.0, ...}},
     "optimizers": {"100F7333": {...}}, "batteries_0x0030": {"<seId>": {"<batteryId>": {...}}}, ...}

A *record* is any dict holding the key ``"Date"``; the dotted path of keys leading to it names the
device (``inverters.7F104920``, ``batteries_0x0030.<seId>.<batteryId>``, ``meters_0x0022.<seId>.9_PVProduction``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

from ...util.atomic import atomic_write

#: attributes that are never metrics (the original skipped exactly these)
NOT_METRICS = frozenset({"Date", "Time", "Undeciphered_data"})
IDENTIFIER = "__Identifier__"
_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9_\-+.@#%=~,]")


# ----------------------------------------------------------------------------- flattening


def nice_key(key: object) -> str:
    """The original's key clean-up: NUL removed, spaces to "_", the word "devices" removed."""
    return str(key).replace("\x00", "").replace(" ", "_").replace("devices", "")


def records(line: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, record) for every record in one semonitor line, in document order.

    Keys are cleaned with :func:`nice_key` and levels that clean to "" are dropped, as the
    original does. Values that are not objects are ignored (the original crashed on them,
    e.g. on the ``-c`` command lines). Iterative, so deeply nested input cannot exhaust the stack.
    """
    stack: list[tuple[tuple[str, ...], Iterator[tuple[Any, Any]]]] = [((), iter(line.items()))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            if not isinstance(value, dict):
                continue
            name = nice_key(key)
            path = (*prefix, name) if name else prefix
            if "Date" in value:
                yield ".".join(path), value
            else:
                stack.append((path, iter(value.items())))
                break
        else:
            stack.pop()


def split_path(path: str) -> tuple[str, str]:
    """(device type, device id): ``"batteries_0x0030.7E1.BAT1"`` -> ``("batteries_0x0030", "7E1.BAT1")``."""
    dev_type, _, dev_id = path.partition(".")
    return dev_type, dev_id


# ----------------------------------------------------------------------------- time and numbers


def record_timestamp(rec: dict[str, Any], tz: tzinfo | None = None) -> float | None:
    """Unix time of a record's local ``Date`` (YYYY-MM-DD) and ``Time`` (HH:MM:SS), or None.

    ``tz=None`` reads them in the host's local time zone with the DST flag left to the
    C library (``mktime`` with ``isdst=-1``), as the original did.
    Differs: a record without a valid Date/Time gives None (the caller skips it); the
    original used 1970-01-01 00:01:01, which no Graphite retention keeps anyway.
    """
    date, tod = rec.get("Date"), rec.get("Time")
    if not isinstance(date, str) or not isinstance(tod, str):
        return None
    try:
        y, mo, d = (int(x) for x in date.split("-"))
        h, mi, s = (int(x) for x in tod.split(":"))
        dt = datetime(y, mo, d, h, mi, s)
    except (ValueError, OverflowError):
        return None
    if tz is not None:
        return dt.replace(tzinfo=tz).timestamp()
    try:
        return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def metric_value(value: Any) -> int | float | None:
    """A record attribute as a Graphite value: JSON numbers only, finite, not booleans.

    Differs: the original sent any value ``float()`` accepted, so an all-digit string such as
    a device ID "12345678" became a metric; strings are never metrics here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def metric_fields(rec: dict[str, Any]) -> Iterator[tuple[str, int | float]]:
    for attr, value in rec.items():
        if attr in NOT_METRICS:
            continue
        v = metric_value(value)
        if v is not None:
            yield attr, v


@dataclass
class PointStats:
    records: int = 0
    points: int = 0
    #: records skipped because Date/Time was missing or invalid
    untimed: int = 0


#: (dotted path, Unix time, value)
TimedValue = tuple[str, float, float]


def timed_values(line: dict[str, Any], base: str = "", tz: tzinfo | None = None,
                 stats: PointStats | None = None) -> list[TimedValue]:
    """Every numeric attribute of every timed record: ``(base.path.attr, timestamp, value)``.

    The path is as the JSON names it; a writer makes it safe for its store (se2graphite for Carbon).
    """
    prefix = f"{base}." if base else ""
    out: list[TimedValue] = []
    for path, rec in records(line):
        ts = record_timestamp(rec, tz)
        if stats is not None:
            stats.records += 1
        if ts is None:
            if stats is not None:
                stats.untimed += 1
            continue
        head = f"{prefix}{path}."
        for attr, value in metric_fields(rec):
            out.append((head + str(attr), ts, value))
    if stats is not None:
        stats.points += len(out)
    return out


# ----------------------------------------------------------------------------- CSV


CSV_POLICY = (
    "Columns: __Identifier__ (the device id) then the sorted keys of the first record of each device "
    "type. If a later record has keys not yet in the file, they are added as new columns at the end "
    "and that file is rewritten once with the wider header (earlier rows get empty cells); a key "
    "missing from a record leaves its cell empty. With -a, the columns of an existing file's header "
    "row are kept."
)


def csv_cell(value: Any) -> str:
    """What csv.DictWriter would write: str() of the value, "" for null."""
    if value is None:
        return ""
    return str(value)


@dataclass
class _CsvFile:
    path: Path
    columns: list[str]
    handle: TextIO
    writer: Any
    header_written: bool
    rows: int = 0


@dataclass
class CsvSet:
    """One ``<prefix>.<deviceType>.csv`` file per device type, columns stable for the whole run."""

    prefix: str
    delimiter: str = ","
    header: bool = False
    append: bool = False
    lineterminator: str = "\r\n"
    files: dict[str, _CsvFile] = field(default_factory=dict)
    #: (device type, new column names) each time a file was widened
    widened: list[tuple[str, list[str]]] = field(default_factory=list)

    def path_for(self, dev_type: str) -> Path:
        """``<prefix>.<dev_type>.csv``; the device type comes from the input, so it can never name
        another directory (the original would follow a "/" or ".." in a key)."""
        safe = _UNSAFE_FILE.sub("_", dev_type)[:120]
        return Path(f"{self.prefix}.{safe}.csv")

    def _dialect(self) -> dict[str, Any]:
        return {"delimiter": self.delimiter, "lineterminator": self.lineterminator}

    def _open(self, dev_type: str, rec: dict[str, Any]) -> _CsvFile:
        path = self.path_for(dev_type)
        columns = [IDENTIFIER, *sorted(str(k) for k in rec)]
        header_written = False
        if self.append and path.exists() and path.stat().st_size > 0:
            existing = self._read_header(path)
            if existing is not None:
                columns, header_written = existing, True
        mode = "a" if self.append else "w"
        handle = open(path, mode, newline="", encoding="utf-8")  # noqa: SIM115 - kept for the run
        writer = csv.writer(handle, **self._dialect())
        f = _CsvFile(path, columns, handle, writer, header_written)
        if self.header and not header_written and (mode == "w" or handle.tell() == 0):
            writer.writerow(columns)
            f.header_written = True
        return f

    def _read_header(self, path: Path) -> list[str] | None:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            first = next(csv.reader(fh, delimiter=self.delimiter), None)
        if first and first[0] == IDENTIFIER:
            return first
        return None

    def _widen(self, dev_type: str, f: _CsvFile, new: list[str]) -> None:
        """Add columns at the end and rewrite the file atomically with the wider header."""
        f.handle.close()
        old_width = len(f.columns)
        f.columns = f.columns + new
        width = len(f.columns)
        buf = io.StringIO()
        out = csv.writer(buf, **self._dialect())
        with open(f.path, newline="", encoding="utf-8", errors="replace") as fh:
            for i, row in enumerate(csv.reader(fh, delimiter=self.delimiter)):
                if i == 0 and f.header_written and row[:1] == [IDENTIFIER]:
                    out.writerow(f.columns)
                    continue
                if len(row) == old_width:
                    row = row + [""] * (width - old_width)
                out.writerow(row)
        atomic_write(f.path, buf.getvalue().encode("utf-8"), fsync=False)
        f.handle = open(f.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        f.writer = csv.writer(f.handle, **self._dialect())
        self.widened.append((dev_type, new))

    def write_line(self, line: dict[str, Any]) -> int:
        """Write every record of one semonitor line (sorted by path, as the original); rows written."""
        n = 0
        touched: set[str] = set()
        for path, rec in sorted(records(line), key=lambda pr: pr[0]):
            dev_type, dev_id = split_path(path)
            f = self.files.get(dev_type)
            if f is None:
                f = self.files[dev_type] = self._open(dev_type, rec)
            known = set(f.columns)
            new = sorted(str(k) for k in rec if str(k) not in known and k != IDENTIFIER)
            if new:
                f.handle.flush()
                self._widen(dev_type, f, new)
            row = {str(k): v for k, v in rec.items()}
            row[IDENTIFIER] = dev_id
            f.writer.writerow([csv_cell(row.get(c)) for c in f.columns])
            f.rows += 1
            touched.add(dev_type)
            n += 1
        for dev_type in touched:
            self.files[dev_type].handle.flush()
        return n

    def close(self) -> None:
        for f in self.files.values():
            f.handle.close()


# ----------------------------------------------------------------------------- se2state


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _entries(group: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for k, v in group.items() if k != "stats" and isinstance(v, dict)]


def _sum(group: dict[str, Any], attr: str) -> float:
    return sum(x for e in _entries(group) if (x := _num(e.get(attr))) is not None)


def _avg(group: dict[str, Any], attr: str) -> float:
    values = [x for e in _entries(group) if (x := _num(e.get(attr))) is not None]
    return sum(values) / len(values) if values else 0


def _zero_inverter() -> dict[str, float]:
    return {"Vac": 0.0, "Pac": 0.0, "Eac": 0.0, "Eday": 0.0, "Etot": 0.0, "Temp": 0.0}


class SeState:
    """The se2state state: latest record per inverter and optimizer, plus totals in ``stats``.

    Structure (as the original)::

        {"inverters": {"stats": {"Vac", "Pac", "Eac", "Eday", "Etot", "Temp"}, "<id>": <latest record>, ...},
         "optimizers": {"stats": {"Temp"}, "<id>": <latest record + "Pdc">, ...}}

    stats: Vac and Temp are averages over inverters, Pac, Eac, Etot sums, Eday the sum but never
    decreasing; optimizers.stats.Temp the average optimizer Temp; each optimizer gets
    Pdc = Vmod * Imod. A line holding events zeroes Eac/Pac of every inverter entry and
    Vmod/Vopt/Imod of every optimizer entry (stats included), as the original did.

    Differs: averages count only entries that have the attribute (the original crashed on a
    record missing one, e.g. a three-phase inverter without Vac); the stats Eday restarts
    when the newest inverter Date changes (the original kept yesterday's total until today's
    passed it), which needs the extra key ``stats.Date``; ``-i`` puts the zeroed entries
    under ``inverters.<id>`` (the original nested them inside ``stats`` by mistake).
    """

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = {"inverters": {"stats": _zero_inverter()},
                                      "optimizers": {"stats": {"Temp": 0.0}}}
        if state:
            for group in ("inverters", "optimizers"):
                if isinstance(state.get(group), dict):
                    self.state[group] = dict(state[group])
                    self.state[group].setdefault("stats", {} if group == "optimizers" else _zero_inverter())
            for k, v in state.items():
                self.state.setdefault(k, v)

    @classmethod
    def initial(cls, inverters: list[str]) -> SeState:
        st = cls()
        for inv in inverters:
            if inv:
                st.state["inverters"][inv] = _zero_inverter()
        return st

    def update(self, line: dict[str, Any]) -> bool:
        """Apply one semonitor line. Returns False if it held no inverter, optimizer or event data."""
        invs = line.get("inverters")
        opts = line.get("optimizers")
        events = line.get("events")
        invs = {k: v for k, v in invs.items() if isinstance(v, dict)} if isinstance(invs, dict) else {}
        opts = {k: v for k, v in opts.items() if isinstance(v, dict)} if isinstance(opts, dict) else {}
        if not invs and not opts and not events:
            return False
        inverters: dict[str, Any] = self.state["inverters"]
        optimizers: dict[str, Any] = self.state["optimizers"]
        inverters.update({k: dict(v) for k, v in invs.items() if k != "stats"})
        optimizers.update({k: dict(v) for k, v in opts.items() if k != "stats"})
        for opt in _entries(optimizers):
            vmod, imod = _num(opt.get("Vmod")), _num(opt.get("Imod"))
            if vmod is not None and imod is not None:
                opt["Pdc"] = vmod * imod
        stats = inverters["stats"]
        stats["Vac"] = _avg(inverters, "Vac")
        stats["Pac"] = _sum(inverters, "Pac")
        stats["Eac"] = _sum(inverters, "Eac")
        eday = _sum(inverters, "Eday")
        dates = [d for e in _entries(inverters) if isinstance(d := e.get("Date"), str)]
        newest = max(dates) if dates else None
        previous = _num(stats.get("Eday")) or 0
        if newest is not None and stats.get("Date") not in (None, newest) and newest > str(stats.get("Date")):
            stats["Eday"] = eday  # a new day: start again
        elif eday > previous:
            stats["Eday"] = eday
        if newest is not None:
            stats["Date"] = newest
        stats["Etot"] = _sum(inverters, "Etot")
        stats["Temp"] = _avg(inverters, "Temp")
        optimizers["stats"]["Temp"] = _avg(optimizers, "Temp")
        if events:
            for entry in inverters.values():
                if isinstance(entry, dict):
                    entry["Eac"] = 0.0
                    entry["Pac"] = 0.0
            for entry in optimizers.values():
                if isinstance(entry, dict):
                    entry["Vmod"] = 0.0
                    entry["Vopt"] = 0.0
                    entry["Imod"] = 0.0
        return True

    def to_json(self) -> str:
        """The state file text: ``json.dump`` defaults, as the original (NaN stays a bare NaN)."""
        import json

        return json.dumps(self.state)

    def save(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        """Atomic replace: a reader sees the previous state or this one, never a partial file."""
        atomic_write(path, self.to_json().encode("utf-8"), fsync=fsync)
