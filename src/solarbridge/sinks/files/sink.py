"""File sinks: ``jsonl`` (one object per reading per line), ``csv`` (a file per source and device type), ``state``
(latest value of every metric of every device, replaced atomically).

Writes run in a worker thread so a slow disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field

from ...model import Reading, slug
from ...plugin import Context, Sink, SinkConfig
from ...util.atomic import atomic_write


def _resolve(path: str, ctx: Context, default: str) -> Path:
    p = Path(path or default).expanduser()
    return p if p.is_absolute() else ctx.state_dir / p


def reading_line(r: Reading) -> str:
    return json.dumps(r.to_dict(), separators=(",", ":"), default=str)


# ----------------------------------------------------------------------------- jsonl


class JsonlConfig(SinkConfig):
    type: Literal["jsonl"] = "jsonl"
    path: str = Field("readings.jsonl", description="file to append to (relative paths are under state_dir)")
    rotate: Literal["none", "size", "daily"] = "none"
    max_bytes: int = Field(100_000_000, ge=1024, description="with rotate = 'size': rotate past this size")
    keep: int = Field(7, ge=1, le=10_000, description="rotated files kept")
    fsync: bool = False


class JsonlSink(Sink):
    """Appends one JSON object per reading per line; rotates by size (``file.1`` ...) or by UTC day."""

    Config = JsonlConfig

    def __init__(self, config: JsonlConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.path = _resolve(config.path, ctx, "readings.jsonl")
        self.f: IO[str] | None = None
        self.day = ""

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived handle
        try:
            mtime = self.path.stat().st_mtime
            self.day = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d") if self.path.stat().st_size else ""
        except OSError:
            self.day = ""

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _rotate_size(self) -> None:
        assert self.f is not None
        self.f.close()
        keep = self.config.keep
        for i in range(keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def _rotate_day(self, old_day: str) -> None:
        assert self.f is not None
        self.f.close()
        os.replace(self.path, self.path.with_name(f"{self.path.stem}-{old_day}{self.path.suffix}"))
        dated = sorted(self.path.parent.glob(f"{self.path.stem}-????-??-??{self.path.suffix}"))
        for old in dated[: max(0, len(dated) - self.config.keep)]:
            old.unlink()
        self._open()

    def _write(self, batch: list[Reading]) -> None:
        if self.f is None:
            self._open()
        assert self.f is not None
        c = self.config
        if c.rotate == "daily":
            # rotation follows the readings' own dates so a replay of old data rotates correctly too
            for r in batch:
                day = r.timestamp.astimezone(UTC).strftime("%Y-%m-%d")
                if self.day and day != self.day:
                    self.f.flush()
                    self._rotate_day(self.day)
                self.day = day
                self.f.write(reading_line(r) + "\n")
        else:
            self.f.write("".join(reading_line(r) + "\n" for r in batch))
            if c.rotate == "size" and self.f.tell() >= c.max_bytes:
                self._rotate_size()
        self.f.flush()
        if c.fsync:
            os.fsync(self.f.fileno())

    async def write(self, batch: list[Reading]) -> None:
        await asyncio.to_thread(self._write, batch)

    async def flush(self) -> None:
        if self.f is not None:
            f = self.f
            await asyncio.to_thread(lambda: (f.flush(), os.fsync(f.fileno())))

    async def stop(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


# ----------------------------------------------------------------------------- csv


class CsvConfig(SinkConfig):
    type: Literal["csv"] = "csv"
    directory: str = Field("csv", description="folder for <source>-<device_type>.csv files (relative: under "
                                              "state_dir)")
    delimiter: str = Field(",", min_length=1, max_length=1)


class CsvSink(Sink):
    """One CSV file per source and device type, ``<source>-<device_type>.csv`` (``givenergy-inverter.csv``),
    with a header row.

    Keyed by source because two device families of one type (a GivEnergy and a Sunsynk inverter) report
    different metrics: in one file they would need a header that changes with arrival order, and per
    column set they would get names (``inverter.1.csv``) that say nothing of what is inside. The source's
    name is its type unless the config names it, so the file names are stable and say where rows came from.

    Columns are ``timestamp,device_id`` then the metrics in the order first seen. A metric that first
    appears later never shifts existing columns: the file is closed and a new one,
    ``<source>-<device_type>.<n>.csv``, starts with the wider header. So every file has one fixed header.
    """

    Config = CsvConfig

    def __init__(self, config: CsvConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.dir = _resolve(config.directory, ctx, "csv")
        self.files: dict[tuple[str, str], tuple[IO[str], Any, list[str]]] = {}

    def _file_for(self, key: tuple[str, str], columns: list[str]) -> tuple[IO[str], Any, list[str]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        source, device_type = key
        base = "-".join(x for x in (slug(source), slug(device_type) or "device") if x)
        n = 0
        while True:
            path = self.dir / (f"{base}.csv" if n == 0 else f"{base}.{n}.csv")
            if not path.exists() or path.stat().st_size == 0:
                break
            with open(path, encoding="utf-8", newline="") as f:
                header = next(csv.reader(f, delimiter=self.config.delimiter), [])
            if header[2:] and set(columns) <= set(header[2:]):
                columns = header[2:]  # reuse an existing file whose header covers these metrics
                break
            n += 1
        fresh = not path.exists() or path.stat().st_size == 0
        f = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - long-lived handle
        w = csv.writer(f, delimiter=self.config.delimiter)
        if fresh:
            w.writerow(["timestamp", "device_id", *columns])
        return f, w, columns

    def _write(self, batch: list[Reading]) -> None:
        for r in batch:
            if not r.metrics:
                continue
            key = (r.source, r.device_type)
            entry = self.files.get(key)
            if entry is None or not r.metrics.keys() <= set(entry[2]):
                cols = list(entry[2]) if entry else []
                cols += [k for k in r.metrics if k not in cols]
                if entry:
                    entry[0].close()
                entry = self.files[key] = self._file_for(key, cols)
            f, w, cols = entry
            m = r.metrics
            w.writerow([r.timestamp.isoformat(), r.device_id, *(_cell(m.get(c)) for c in cols)])
        for f, _, _ in self.files.values():
            f.flush()

    async def write(self, batch: list[Reading]) -> None:
        await asyncio.to_thread(self._write, batch)

    async def stop(self) -> None:
        for f, _, _ in self.files.values():
            f.close()
        self.files.clear()


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    return v


# ----------------------------------------------------------------------------- state


class StateConfig(SinkConfig):
    type: Literal["state"] = "state"
    path: str = Field("state.json", description="JSON file (relative: under state_dir)")
    min_interval: float = Field(1.0, ge=0, le=3600, description="at most one rewrite per this many seconds")


class StateSink(Sink):
    """Latest value of every metric of every device in one JSON file, replaced atomically.

    Layout: ``{"devices": {id: {"device_type", "timestamp", "online", "metrics": {...}}}, "updated": iso}``.
    """

    Config = StateConfig

    def __init__(self, config: StateConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.path = _resolve(config.path, ctx, "state.json")
        self.devices: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        if not self.devices and self.path.exists():
            try:
                self.devices = json.loads(self.path.read_text()).get("devices", {})
            except (OSError, ValueError):
                self.devices = {}

    def update(self, batch: list[Reading]) -> None:
        for r in batch:
            d = self.devices.setdefault(r.device_id, {"device_type": r.device_type, "metrics": {}})
            d["device_type"] = r.device_type
            d["online"] = r.online
            if r.metrics:
                d["metrics"].update(r.metrics)
                d["timestamp"] = r.timestamp.isoformat()
        self._dirty = True

    def render(self) -> bytes:
        doc = {"updated": datetime.now(UTC).isoformat(), "devices": self.devices}
        return (json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n").encode()

    async def write(self, batch: list[Reading]) -> None:
        self.update(batch)
        loop = asyncio.get_running_loop()
        wait = self.config.min_interval - (loop.time() - self._last_write)
        if wait <= 0:
            await self.flush()
        elif self._timer is None:
            # the newest values must reach the file even if no further reading arrives
            self._timer = loop.call_later(wait, lambda: loop.create_task(self.flush()))

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._dirty:
            return
        data = self.render()
        self._dirty = False
        self._last_write = asyncio.get_running_loop().time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(atomic_write, self.path, data)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

