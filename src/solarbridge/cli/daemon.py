"""`solarbridge run` and `solarbridge check-config`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("solarbridge")


def load_config_or_exit(path: str) -> Any:
    from ..config import ConfigError, load

    try:
        return load(path)
    except ConfigError as e:
        # an inventory reports every bad row: one line each
        for line in str(e).splitlines():
            print(f"solarbridge: config error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def check_config(args: argparse.Namespace) -> int:
    from ..config import masked

    cfg = load_config_or_exit(args.config)
    doc = masked(cfg)
    if args.format == "json":
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(_to_toml(doc))
    return 0


def _to_toml(doc: dict[str, Any]) -> str:
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if v is None:
            return '""'
        return json.dumps(str(v))

    lines: list[str] = []
    for section in ("daemon", "api", "inventory"):
        if section not in doc:
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {val(v)}" for k, v in doc[section].items() if not isinstance(v, dict | list)]
        lines.append("")
    for section in ("sources", "sinks"):
        for entry in doc[section]:
            lines.append(f"[[{section}]]")
            lines += [f"{k} = {val(v)}" for k, v in entry.items() if not isinstance(v, dict)]
            lines.append("")
    return "\n".join(lines)


async def run_supervisor(cfg: Any, *, stop: asyncio.Event | None = None, duration: float = 0,
                         on_started: Callable[[Any], Awaitable[None] | None] | None = None) -> int:
    """Build and run a Supervisor until SIGINT/SIGTERM (or ``duration``), then shut down cleanly."""
    from ..util.signals import StopSignals

    with StopSignals(stop) as signals:
        return await _supervise(cfg, signals.event, duration, on_started)


async def _supervise(cfg: Any, stop: asyncio.Event, duration: float,
                     on_started: Callable[[Any], Awaitable[None] | None] | None) -> int:
    from ..runtime import Supervisor

    sup = Supervisor(cfg)
    sup.build()
    await sup.start()
    api_task = None
    if cfg.api.enabled:
        from ..api.server import serve

        api_task = asyncio.create_task(serve(sup, cfg.api), name="api")
    if on_started is not None:
        res = on_started(sup)
        if asyncio.iscoroutine(res):
            await res
    log.info("running: %d source(s), %d sink(s)", len(sup.sources), len(sup.sinks))
    waiters = [asyncio.create_task(stop.wait())]
    if duration:
        waiters.append(asyncio.create_task(asyncio.sleep(duration)))
    if api_task is not None:
        waiters.append(api_task)
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    rc = 0
    if api_task is not None and api_task in done and api_task.exception() is not None:
        log.error("web service failed: %s", api_task.exception())
        rc = 1
    for t in pending:
        t.cancel()
    log.info("stopping")
    await sup.stop()
    return rc


def run_daemon(args: argparse.Namespace) -> int:
    from ..logsetup import setup

    setup(args.verbose, args.log_format)
    cfg = load_config_or_exit(args.config)
    from ..util.aiorun import run

    return run(run_supervisor(cfg))
