"""`solarbridge demo`: every built-in simulator, wired into the history store, every local sink and the
dashboard. Each device family contributes a ``demo.py`` (see :data:`solarbridge.registry.DEMO_PARTS`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("solarbridge.demo")


def _parts_available() -> list[str]:
    from .. import registry

    return [m for m in registry.DEMO_PARTS if importlib.util.find_spec(m) is not None]


async def _demo(args: argparse.Namespace) -> int:
    from ..config import ConfigError, build
    from .daemon import run_supervisor

    workdir = Path(args.dir).absolute()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"solarbridge demo: --dir: cannot create {workdir}: {e.strerror or e}", file=sys.stderr)
        return 2
    parts = []
    for mod_name in _parts_available():
        mod = importlib.import_module(mod_name)
        try:
            parts.append(await mod.start(workdir))
        except Exception as e:  # noqa: BLE001 - one family failing must not stop the demo
            print(f"demo: {mod_name.split('.')[-2]} simulator could not start: {e}", file=sys.stderr)
    api_ok = not args.no_api and importlib.util.find_spec("solarbridge.api.server") is not None
    raw: dict[str, Any] = {
        "daemon": {"state_dir": str(workdir), "history": True},
        "api": {"enabled": api_ok, "listen": args.listen},
        "sources": [s for p in parts for s in p.sources],
        "sites": [s for p in parts for s in p.sites],
        "sinks": [
            {"type": "jsonl", "name": "jsonl", "path": str(workdir / "readings.jsonl"), "rotate": "size"},
            {"type": "csv", "name": "csv", "directory": str(workdir / "csv")},
            {"type": "state", "name": "state", "path": str(workdir / "state.json")},
            *[s for p in parts for s in p.sinks],
        ],
    }
    try:
        cfg = build(raw)
    except ConfigError as e:
        print(f"demo: internal config error: {e}", file=sys.stderr)
        return 1

    def started(sup: Any, urls: list[str]) -> None:
        cmd = CommandHints()
        print("solarbridge demo is running. Started:")
        for p in parts:
            print(f"  - {p.title}")
            for n in p.notes:
                print(f"      {cmd.rewrite(n)}")
        print(f"Files in {workdir}:")
        print("  readings.jsonl  (every reading)   csv/  (one file per source and device type)   "
              "state.json  (latest values)")
        print(f"  history.sqlite  (query: {cmd('solarbridge')} history --db {workdir / 'history.sqlite'} "
              f"--device synthetic-home --metric pv_power_w --since 1h)")
        if urls:
            print(f"Dashboard: {urls[0]}")
        if cmd.venv_hint:
            print(f"(these commands are not on your PATH; to use them by name: source {cmd.venv_hint})")
        print("Press Ctrl-C to stop.", flush=True)

    try:
        return await run_supervisor(cfg, duration=args.duration, on_started=started)
    finally:
        for p in parts:
            if p.stop is not None:
                with contextlib.suppress(Exception):
                    res = p.stop()
                    if asyncio.iscoroutine(res):
                        await res
        print("demo stopped cleanly.", flush=True)


class CommandHints:
    """Spell the commands in printed hints so that they can be pasted: by name when that name on PATH is
    this installation's, else by path (``.venv/bin/givtcp-read`` after ``make demo``)."""

    def __init__(self) -> None:
        self.bindir = Path(sys.executable).parent
        self.venv_hint = ""
        try:
            from importlib.metadata import distribution

            names = {ep.name for ep in distribution("solarbridge").entry_points if ep.group == "console_scripts"}
        except Exception:  # noqa: BLE001 - not installed as a distribution: print names as they are
            names = set()
        self.names = names
        self._pattern = (re.compile(r"(?<![\w/.-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True))
                                    + r")(?![\w.-])") if names else None)

    def __call__(self, name: str) -> str:
        mine = self.bindir / name
        found = shutil.which(name)
        if not mine.exists() or (found and Path(found).resolve() == mine.resolve()):
            return name
        try:
            shown = str(mine.relative_to(Path.cwd()))
        except ValueError:
            shown = str(mine)
        activate = mine.parent / "activate"
        if activate.exists():
            try:
                self.venv_hint = str(activate.relative_to(Path.cwd()))
            except ValueError:
                self.venv_hint = str(activate)
        return shown

    def rewrite(self, text: str) -> str:
        """Every command name in ``text`` as :meth:`__call__` spells it."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self(m.group(1)), text)


def run_demo(args: argparse.Namespace) -> int:
    from ..logsetup import setup

    setup(max(args.verbose, 1) if args.verbose else 0, args.log_format)
    from ..util.aiorun import run

    return run(_demo(args))
