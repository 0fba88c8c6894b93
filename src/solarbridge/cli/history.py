"""`solarbridge history`: query the embedded SQLite history store."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

#: the longest --step, as the API's
MAX_STEP = 36500 * 86400


def _db_path(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    if args.config:
        from .daemon import load_config_or_exit

        cfg = load_config_or_exit(args.config)
        for s in cfg.sinks:
            if s.type == "history" and s.path:
                return Path(s.path)
        return Path(cfg.daemon.state_dir) / "history.sqlite"
    from ..config import default_state_dir

    return default_state_dir() / "history.sqlite"


def history(args: argparse.Namespace) -> int:
    import sqlite3

    path = _db_path(args)
    try:
        return _history(args, path)
    except sqlite3.DatabaseError as e:
        # not SQLite at all ("file is not a database"), or SQLite without our tables ("no such table")
        print(f"solarbridge history: {path}: not a solarbridge history database ({e})", file=sys.stderr)
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        print(f"solarbridge history: {path}: {e.strerror or e}", file=sys.stderr)
        return 1


def _history(args: argparse.Namespace, path: Path) -> int:
    from ..sinks.history.sink import HistoryStore
    from ..util.timeparse import parse_duration, parse_time

    if path.is_dir():
        print(f"solarbridge history: {path}: is a directory, not a history database", file=sys.stderr)
        return 1
    try:
        store = HistoryStore(path, readonly=True)
    except FileNotFoundError as e:
        print(f"solarbridge history: {e}", file=sys.stderr)
        return 1
    if not args.device or not args.metric:
        if args.device or args.metric:
            print("solarbridge history: give both --device and --metric (or neither, to list series)",
                  file=sys.stderr)
            return 2
        rows = [[s["device_id"], s["device_type"], s["metric"]] for s in store.series()]
        return _emit(["device_id", "device_type", "metric"], rows, args.format)
    try:
        now = datetime.now(UTC)
        since = parse_time(args.since, now=now)
        until = parse_time(args.until, now=now)
        step = parse_duration(args.step) if args.step is not None else 0
    except ValueError as e:
        print(f"solarbridge history: {e}", file=sys.stderr)
        return 2
    if args.step is not None and not 1 <= step <= MAX_STEP:
        print(f"solarbridge history: --step: must be from 1s to {MAX_STEP // 86400}d (got {args.step!r})",
              file=sys.stderr)
        return 2
    if since > until:
        print("solarbridge history: --since is after --until", file=sys.stderr)
        return 2
    if step:
        buckets = store.downsample(args.device, args.metric, since, until, step)
        rows = [[datetime.fromtimestamp(b.ts, UTC).isoformat(), b.min, b.mean, b.max, b.count]
                for b in buckets]
        return _emit(["time", "min", "mean", "max", "count"], rows, args.format)
    points = store.query(args.device, args.metric, since, until)
    return _emit(["time", "value"], [[t.isoformat(), v] for t, v in points], args.format)


def _emit(header: list[str], rows: list[list[object]], fmt: str) -> int:
    out = sys.stdout
    if fmt == "json":
        json.dump([dict(zip(header, r, strict=True)) for r in rows], out, indent=1)
        out.write("\n")
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(header)
        w.writerows(rows)
    else:
        cells = [header] + [[_fmt(c) for c in r] for r in rows]
        widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
        for row in cells:
            out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if not rows:
            out.write("(no data in that range)\n")
    return 0


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
