"""`solarbridge run` and `solarbridge check-config`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("solarbridge")
#: start-up summary and state changes: shown without -v (run_daemon sets its level to INFO)
status = logging.getLogger("solarbridge.status")


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
    from ..config import ConfigError, masked
    from ..stages.sites import describe

    cfg = load_config_or_exit(args.config)
    try:
        require_sources(cfg)
    except ConfigError as e:
        print(f"solarbridge: config error: {e}", file=sys.stderr)
        return 2
    doc = masked(cfg)
    if args.format == "json":
        # the sites as resolved (roles, inferred members), as check-config's TOML output ends with them
        doc["sites_resolved"] = [line.removeprefix("#").strip() for line in describe(cfg.sites)]
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(_to_toml(doc))
        print("\n".join(describe(cfg.sites)))
    return 0


def _to_toml(doc: dict[str, Any]) -> str:
    """The resolved config as TOML that check-config accepts again (TOML has no null: unset keys are left out)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v if x is not None) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{_key(k)} = {val(x)}" for k, x in v.items() if x is not None) + " }"
        return json.dumps(str(v))

    def table(items: dict[str, Any]) -> list[str]:
        return [f"{_key(k)} = {val(v)}" for k, v in items.items() if v is not None]

    lines: list[str] = []
    for section in ("daemon", "api", "counters", "inventory"):
        if section not in doc:
            continue
        lines += [f"[{section}]", *table(doc[section]), ""]
    for section in ("sites", "sources", "sinks"):
        for entry in doc[section]:
            lines += [f"[[{section}]]", *table(entry), ""]
    return "\n".join(lines)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


class StartupError(Exception):
    """Something the daemon needs could not be set up (a directory, a file, a port): one line, exit 1."""


def _os_text(e: OSError) -> str:
    if e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def prepare_state_dir(cfg: Any) -> None:
    """Create ``daemon.state_dir`` (and check it is writable) before anything is built in it."""
    from ..config import ConfigError

    path = Path(cfg.daemon.state_dir)
    where = f"{cfg.path}: " if cfg.path else ""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{where}daemon.state_dir: cannot create {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}daemon.state_dir: {path} is not writable") from None


def require_sources(cfg: Any) -> None:
    """A daemon without sources would run forever doing nothing: say so instead."""
    from ..config import ConfigError

    if not cfg.sources and getattr(cfg, "_other_shards", 0):
        # one worker of a fleet with more workers than its share of devices: idle, not misconfigured
        # (a StatefulSet scaled beyond the inventory must not crash-loop)
        log.warning("shard %s holds none of the %d source(s); running idle", cfg.shard, cfg._other_shards)
        return
    if not cfg.sources:
        where = f"{cfg.path}: " if cfg.path else ""
        raise ConfigError(f"{where}sources: none configured, so there is nothing to run "
                          "(add a [[sources]] table, e.g. type = \"synthetic\")")


def _named(items: dict[str, Any]) -> str:
    parts = []
    for name, plugin in items.items():
        type_ = plugin.ctx.health.type
        parts.append(name if name == type_ else f"{name} ({type_})")
    return ", ".join(parts) or "none"


def startup_summary(sup: Any, urls: list[str]) -> str:
    """One line: what runs, and where the dashboard is."""
    text = (f"running {len(sup.sources)} source(s): {_named(sup.sources)}; "
            f"{len(sup.sinks)} sink(s): {_named(sup.sinks)}")
    return text + (f"; dashboard {', '.join(urls)}" if urls else "; no dashboard ([api] enabled = false)")


class DeviceWatch:
    """A bus listener that logs one line when a device first answers, goes offline or comes back."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.online: dict[str, bool] = {}

    def __call__(self, reading: Any) -> None:
        prev = self.online.get(reading.device_id)
        if prev is reading.online:  # the hot path: no change
            return
        self.online[reading.device_id] = reading.online
        what = f"device {reading.device_id} ({reading.device_type}, source {reading.source})"
        if prev is None:
            self.log.info("%s: %s", what, "online" if reading.online else "offline (not answering)")
        else:
            self.log.info("%s: %s", what, "back online" if reading.online else "offline (not answering)")


async def run_supervisor(cfg: Any, *, stop: asyncio.Event | None = None, duration: float = 0,
                         on_started: Callable[[Any, list[str]], Awaitable[None] | None] | None = None) -> int:
    """Build and run a Supervisor until SIGINT/SIGTERM (or ``duration``), then shut down cleanly.

    ``on_started(supervisor, dashboard_urls)`` runs once every source, sink and the web service are up.
    """
    from ..util.signals import StopSignals

    with StopSignals(stop) as signals:
        return await _supervise(cfg, signals.event, duration, on_started)


async def _supervise(cfg: Any, stop: asyncio.Event, duration: float,
                     on_started: Callable[[Any, list[str]], Awaitable[None] | None] | None) -> int:
    from ..runtime import Supervisor

    prepare_state_dir(cfg)
    sup = Supervisor(cfg)
    try:
        sup.build()
    except OSError as e:
        raise StartupError(_os_text(e)) from None
    sup.bus.listeners.append(DeviceWatch(status))
    await sup.start()
    api = None
    rc = 0
    if cfg.api.enabled:
        from ..api.server import ApiServer

        api = ApiServer(sup, cfg.api)
        try:
            await api.start()  # listening before the dashboard URL is printed
        except OSError as e:
            log.error("web service failed: %s", e)
            api = None
            rc = 1
            stop.set()
    if rc == 0:
        urls = api.urls if api is not None else []
        status.info("%s", startup_summary(sup, urls))
        if on_started is not None:
            res = on_started(sup, urls)
            if asyncio.iscoroutine(res):
                await res
    waiters = [asyncio.create_task(stop.wait(), name="stop-signal")]
    if duration:
        waiters.append(asyncio.create_task(asyncio.sleep(duration), name="duration"))
    if api is not None:
        waiters.append(asyncio.create_task(api.wait(), name="api:wait"))
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    # a run that ends by itself (--duration) is finite: every sink must deliver, not only spool
    finite = any(t.get_name() == "duration" for t in done)
    for t in done:
        if t.get_name() == "api:wait" and t.exception() is not None:
            log.error("web service failed: %s", t.exception())
            rc = 1
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    status.info("stopping")
    # the web service and the supervisor stop side by side, each bounded by its own timeout; every
    # task is awaited here, so nothing is left for the event loop to cancel (and complain about) at exit
    stopping = sup.stop(deliver=True, timeout=cfg.daemon.shutdown_timeout) if finite else sup.stop()
    stoppers = [asyncio.create_task(stopping, name="stop:supervisor")]
    if api is not None:
        stoppers.append(asyncio.create_task(api.stop(), name="stop:api"))
    await asyncio.wait(stoppers)
    for t in stoppers:
        if not t.cancelled() and t.exception() is not None:
            log.error("%s: %s", t.get_name(), t.exception())
    if finite:
        for name, text in sup.undelivered.items():
            status.error("not delivered: sink %s: %s", name, text)
            rc = 1
    status.info("stopped")
    return rc


def run_daemon(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..logsetup import setup

    setup(args.verbose, args.log_format)
    # without -v the daemon still says what it started and each state change (one line each)
    status.setLevel(logging.INFO)
    cfg = load_config_or_exit(args.config)
    from ..util.aiorun import run

    try:
        require_sources(cfg)
        return run(run_supervisor(cfg, duration=max(0.0, getattr(args, "duration", 0) or 0)))
    except ConfigError as e:
        print(f"solarbridge: config error: {e}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(f"solarbridge: cannot start: {e}", file=sys.stderr)
        return 1
