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
    if args.energy:
        return _energy(args, store)
    if args.site:
        print("solarbridge history: --site goes with --energy", file=sys.stderr)
        return 2
    if not args.device or not args.metric:
        if args.device or args.metric:
            print("solarbridge history: give both --device and --metric (or neither, to list series)",
                  file=sys.stderr)
            return 2
        given = [f"--{n}" for n in ("since", "step") if getattr(args, n) is not None]
        given += ["--until"] if args.until not in (None, "now") else []
        if given:
            print(f"solarbridge history: {' and '.join(given)} need --device and --metric (without them,"
                  " the stored series are listed)", file=sys.stderr)
            return 2
        rows = [[s["device_id"], s["device_type"], s["metric"]] for s in store.series()]
        return _emit(["device_id", "device_type", "metric"], rows, args.format)
    now = datetime.now(UTC)
    field = "--since"
    try:
        since = parse_time(args.since or "1h", now=now)
        field = "--until"
        until = parse_time(args.until, now=now)
        field = "--step"
        step = parse_duration(args.step) if args.step is not None else 0
    except ValueError as e:
        why = str(e)
        if field == "--step":
            why = f"must be a duration from 1s to {MAX_STEP // 86400}d, like 5m or 1h (got {args.step!r})"
        print(f"solarbridge history: {field}: {why}", file=sys.stderr)
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


def _site_timezone(args: argparse.Namespace, site: str) -> str:
    if args.tz is not None:
        return str(args.tz)
    if args.config:
        from .daemon import load_config_or_exit

        for s in load_config_or_exit(args.config).sites:
            if s.name == site:
                return s.timezone
    return ""


def _energy(args: argparse.Namespace, store: object) -> int:
    from ..energyview import default_since, site_energy, site_names
    from ..stages.sites import ENERGY_METRICS
    from ..util.timeparse import parse_time, zone

    if args.device or args.metric or args.step:
        print("solarbridge history: --energy takes --site, --by, --since, --until, --tz (not --device, --metric,"
              " --step)", file=sys.stderr)
        return 2
    if not args.site:
        return _emit(["site"], [[n] for n in site_names(store)], args.format)
    site = args.site.removeprefix("site:")
    try:
        tz = zone(_site_timezone(args, site))
        now = datetime.now(UTC)
        until = parse_time(args.until, now=now)
        since = parse_time(args.since, now=now) if args.since else default_since(until, args.by, tz)
        if since >= until:
            raise ValueError("--since is after --until")
        periods = site_energy(store, site, args.by, since, until, tz)
    except ValueError as e:
        print(f"solarbridge history: {e}", file=sys.stderr)
        return 2
    if all(v is None for p in periods for v in p.kwh.values()) and site not in site_names(store):
        known = ", ".join(site_names(store)) or "none"
        print(f"solarbridge history: --site: no energy history for site {site!r} (known: {known})", file=sys.stderr)
        return 1
    flows = list(ENERGY_METRICS)
    fmt_start = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[args.by]
    rows: list[list[object]] = [[p.start.strftime(fmt_start), *[p.kwh[f] for f in flows]] for p in periods]
    header = [args.by, *[f + "_kwh" for f in flows]]
    if args.format == "table":
        rows = [[r[0], *["–" if v is None else f"{v:.3f}" for v in r[1:]]] for r in rows]
    return _emit(header, rows, args.format)


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
