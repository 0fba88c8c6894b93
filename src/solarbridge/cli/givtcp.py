"""GivTCP-compatible commands: ``givtcp-read``, ``givtcp-write``, ``givtcp-rest`` and ``solarbridge giv``.

    givtcp-read [runAll|getTimeslots|getCombinedStats|getModesandTimes]
    givtcp-write setChargeSlot1 '{"start":"0100","finish":"0400","chargeToPercent":"55"}'
    givtcp-rest [--listen-host 127.0.0.1] [--listen-port 6345] [--workers N] [--token T [--token-reads]]
    solarbridge giv read|write|discover|rest ...

Settings come from GivTCP's environment variables (INVERTOR_IP, MQTT_OUTPUT, ...) or a settings
file; ``--host``/``--port`` override INVERTOR_IP/INVERTOR_PORT. JSON goes to stdout. Exit codes:
0 success, 1 the inverter could not be reached or refused/failed a write, 2 bad usage, settings
or payload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

READ_FUNCTIONS = ("runAll", "runALL", "getTimeslots", "getCombinedStats", "getModesandTimes")


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", help="settings file (TOML, JSON or NAME=value lines); also GIVTCP_SETTINGS")
    p.add_argument("--host", help="dongle address (overrides INVERTOR_IP)")
    p.add_argument("--port", type=int, help="dongle TCP port (default 8899)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each reply (default 3)")


def _check_port(option: str, value: int | None) -> None:
    from ..config import ConfigError
    from ..util.ports import tcp_port

    if value is not None:
        try:
            tcp_port(value)
        except ValueError as e:
            raise ConfigError(f"{option}: {e}") from None


def _check_timeout(value: float) -> None:
    from ..config import ConfigError

    if not 0 < value <= 300:
        raise ConfigError(f"--timeout: must be more than 0 and at most 300 seconds (got {value:g})")


def _settings(a: argparse.Namespace) -> Any:
    from ..sources.givenergy.settings import load_settings

    _check_port("--port", a.port)
    if hasattr(a, "timeout"):
        _check_timeout(a.timeout)
    s = load_settings(file=a.settings)
    if a.host:
        s.invertor_ip = a.host
    if a.port is not None:
        s.invertor_port = a.port
    if s.debug:
        handler: logging.Handler = (logging.FileHandler(s.debug_file_location) if s.debug_file_location
                                    else logging.StreamHandler(sys.stderr))
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    if not s.invertor_ip:
        from ..config import ConfigError

        raise ConfigError("INVERTOR_IP: required (set it, or pass --host; find it with: solarbridge giv discover)")
    return s


def _client(s: Any, a: argparse.Namespace, meters: tuple[int, ...] | None = None) -> Any:
    """The dongle's client; ``meters=()`` skips the external-meter probe (a write does not read them)."""
    from ..config import ConfigError
    from ..sources.givenergy.client import GivEnergyClient

    inverters = s.inverters()
    n = getattr(a, "inverter", 1)
    if not 1 <= n <= len(inverters):
        raise ConfigError(f"--inverter: must be 1..{len(inverters)} (INVERTOR_IP lists {len(inverters)}; got {n})")
    host, port = inverters[n - 1]
    return GivEnergyClient(host, port, timeout=a.timeout, retries=2, gap=0.05, meters=meters)


async def _publish(settings: Any, reading: Any) -> list[str]:
    """Send one reading through the configured generic sinks (MQTT_OUTPUT, INFLUX_OUTPUT, HA_OUTPUT)."""
    from .. import registry
    from ..config import validate_plugin
    from ..plugin import Context, DeliveryPending

    errors = []
    for i, table in enumerate(settings.sink_tables()):
        cfg = validate_plugin("sinks", i, table, registry.SINKS)
        cls = registry.load(registry.SINKS[table["type"]])
        sink = cls(cfg, Context.standalone(table["name"], "sink", table["type"], settings.cache_location))
        try:
            await sink.start()
            # connection-oriented sinks (MQTT) connect in the background: give them a moment
            deadline = asyncio.get_running_loop().time() + 10
            while getattr(sink, "connected", True) is False and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            await sink.write([reading])
            # delivered, not only handed over (MQTT waits for the broker); bounded: a server that is down
            # is reported by name below, never waited on forever
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sink.deliver(), max(1.0, deadline - asyncio.get_running_loop().time()))
            while sink.pending() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            left = sink.undelivered()
            if left:
                errors.append(f"{table['name']}: not delivered: {left}")
        except DeliveryPending:
            # the sink holds what it could not deliver (HA_OUTPUT with Home Assistant down): name it
            errors.append(f"{table['name']}: not delivered: {sink.undelivered()}")
        except Exception as e:  # an output failing must not hide the others
            errors.append(f"{table['name']}: {e}")
        finally:
            await sink.stop()
    return errors


async def _read(a: argparse.Namespace) -> int:
    from ..sources.givenergy import givtcp
    from ..sources.givenergy.client import GivEnergyError
    from ..sources.givenergy.readings import build_reading

    s = _settings(a)
    raw = s.print_raw or a.raw
    layout = a.layout or s.givtcp_layout
    try:
        async with _client(s, a) as c:
            await c.detect(s.numbatteries)
            plant = await c.refresh(full=True)
    except GivEnergyError as e:
        _print({"result": f"Error: {e}"})
        return 1
    fn = "runAll" if a.function == "runALL" else a.function
    out = {
        "runAll": lambda: givtcp.run_all(plant, raw=raw, layout=layout),
        "getTimeslots": lambda: givtcp.get_timeslots(plant),
        "getCombinedStats": lambda: givtcp.get_combined_stats(plant, raw=raw),
        "getModesandTimes": lambda: givtcp.get_modes_and_times(plant, raw=raw),
    }[fn]()
    _print(out)
    if s.mqtt_output or s.influx_output or s.ha_output:
        errors = await _publish(s, build_reading(plant, source="givtcp", layout=layout, raw=raw))
        for e in errors:
            print(f"output failed: {e}", file=sys.stderr)
        if errors:
            return 1
    return 0


async def _write(a: argparse.Namespace) -> int:
    from ..model import ControlError
    from ..sources.givenergy.client import GivEnergyError
    from ..sources.givenergy.controls import PlanContext, named, plan, validate

    try:
        wp = validate(a.command, a.payload, allow_reboot=a.allow_reboot)
    except ControlError as e:
        _print({"result": f"Setting {a.command} failed: {e}"})
        return 2
    if wp.timed is not None:
        _print({"result": f"Setting {a.command} failed: a timed control must be reverted later, which a one-shot "
                          "command cannot do; use the daemon or givtcp-rest"})
        return 2
    s = _settings(a)
    try:
        async with _client(s, a, meters=()) as c:
            # what the model offers (slots, per-slot targets, battery capacity) decides the writes
            await c.detect(0)
            plant = await c.refresh(full=True)
            try:  # what this model does not have is a bad request (nothing sent), not a refusal
                wp = plan(a.command, a.payload, context=PlanContext.for_plant(plant, allow_reboot=a.allow_reboot))
            except ControlError as e:
                if e.status >= 500:
                    raise
                _print({"result": f"Setting {a.command} failed: {e}"})
                return 2
            await c.execute(wp)
    except (ControlError, GivEnergyError) as e:
        _print({"result": f"Setting {a.command} failed: {e}"})
        return 1
    logging.getLogger("solarbridge.givenergy").debug("%s wrote %s", wp.command, named(wp.writes))
    _print({"result": wp.success_message()})
    return 0


async def _discover(a: argparse.Namespace) -> int:
    import ipaddress

    _check_port("--port", a.port)

    from ..sources.givenergy.discovery import discover, local_networks

    try:
        nets = [ipaddress.IPv4Network(n, strict=False) for n in a.network] if a.network else local_networks()
    except ValueError as e:
        print(f"--network: {e}", file=sys.stderr)
        return 2
    if not nets:
        print("no local IPv4 network found; pass --network 192.168.1.0/24", file=sys.stderr)
        return 2
    if any(n.num_addresses > 65536 for n in nets):
        print("--network: at most a /16 per network", file=sys.stderr)
        return 2
    found = await discover(nets, a.port, a.timeout, a.concurrency)
    _print(found)
    return 0 if found else 1


def _read_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Read a GivEnergy inverter, GivTCP-style JSON on stdout")
    p.add_argument("function", nargs="?", default="runAll", choices=READ_FUNCTIONS)
    p.add_argument("--layout", choices=("v1", "v3"), help="GivTCP key names (default v1, or GIVTCP_LAYOUT)")
    p.add_argument("--raw", action="store_true", help="add raw registers (as PRINT_RAW)")
    p.add_argument("--inverter", type=int, default=1, help="which of INVERTOR_IP's inverters (1-based)")
    _common(p)
    p.set_defaults(prog=prog)
    return p


def _write_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Control a GivEnergy inverter with GivTCP's commands")
    p.add_argument("command", help="e.g. setChargeTarget, setChargeSlot1, setBatteryMode, pauseChargeSchedule")
    p.add_argument("payload", nargs="?", default=None,
                   help="JSON payload, e.g. '{\"chargeToPercent\":\"50\"}' (or a bare value)")
    p.add_argument("--allow-reboot", action="store_true", help="allow rebootInverter (refused without it)")
    p.add_argument("--inverter", type=int, default=1, help="which of INVERTOR_IP's inverters (1-based)")
    _common(p)
    p.set_defaults(prog=prog)
    return p


def _rest_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="GivTCP-compatible REST service (one poller, shared cache)")
    p.add_argument("--listen-host", "--bind", dest="bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1)")
    p.add_argument("--listen-port", dest="listen_port", type=int, default=6345, help="HTTP port (default 6345)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (one polls the inverter)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on the control routes (or GIVTCP_REST_TOKEN)")
    p.add_argument("--token-reads", action="store_true",
                   help="require the token on the read routes too (GET /runAll ...; GIVTCP_REST_TOKEN_READS=1)")
    p.add_argument("--state-dir", help="cache and lock directory (default CACHELOCATION)")
    _common(p)
    p.set_defaults(prog=prog)
    return p


def _rest(a: argparse.Namespace) -> int:
    import uvicorn

    _check_port("--listen-port", a.listen_port)
    s = _settings(a)  # validate before starting workers
    for i in range(len(s.inverters())):
        s.source_config(i)
    if not 1 <= a.workers <= 64:
        print(f"--workers: must be 1..64 (got {a.workers})", file=sys.stderr)
        return 2
    env = os.environ
    env["INVERTOR_IP"] = s.invertor_ip
    env["INVERTOR_PORT"] = str(s.invertor_port)
    if a.settings:
        env["GIVTCP_SETTINGS"] = a.settings
    if a.token:
        env["GIVTCP_REST_TOKEN"] = a.token
    if a.token_reads:
        env["GIVTCP_REST_TOKEN_READS"] = "1"
    if a.state_dir:
        env["GIVTCP_STATE_DIR"] = a.state_dir
    if a.bind not in ("127.0.0.1", "::1", "localhost") and not env.get("GIVTCP_REST_TOKEN"):
        print(f"warning: listening on {a.bind} without a bearer token: anyone on the network can control"
              " the inverter", file=sys.stderr)
    print(f"givtcp-rest: http://{a.bind}:{a.listen_port} ({a.workers} worker{'s' if a.workers > 1 else ''}),"
          f" polling {s.invertor_ip}:{s.invertor_port} every {s.self_run_loop_timer:g} s", file=sys.stderr, flush=True)
    uvicorn.run("solarbridge.api.givtcp:create_app_from_env", factory=True, host=a.bind, port=a.listen_port,
                workers=a.workers, log_level="warning")
    return 0


def _run(coro_fn: Any, a: argparse.Namespace) -> int:
    from ..config import ConfigError

    try:
        return int(asyncio.run(coro_fn(a)))
    except ConfigError as e:
        print(f"{getattr(a, 'prog', 'givtcp')}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def read_main(argv: list[str] | None = None) -> int:
    a = _read_parser("givtcp-read").parse_args(argv)
    return _run(_read, a)


def write_main(argv: list[str] | None = None) -> int:
    a = _write_parser("givtcp-write").parse_args(argv)
    return _run(_write, a)


def rest_main(argv: list[str] | None = None) -> int:
    from ..config import ConfigError

    a = _rest_parser("givtcp-rest").parse_args(argv)
    try:
        return _rest(a)
    except ConfigError as e:
        print(f"givtcp-rest: error: {e}", file=sys.stderr)
        return 2


def giv_main(argv: list[str]) -> int:
    """``solarbridge giv read|write|discover|rest ...``"""
    usage = "usage: solarbridge giv {read,write,discover,rest} ..."
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        print("  read [runAll|getTimeslots|getCombinedStats|getModesandTimes]   GivTCP JSON on stdout")
        print("  write COMMAND [JSON]                                            e.g. setChargeTarget '{...}'")
        print("  discover [--network CIDR] [--port 8899]                         find dongles on the LAN")
        print("  rest [--listen-port 6345] [--workers N]                         GivTCP REST service")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "read":
        return _run(_read, _read_parser("solarbridge giv read").parse_args(rest))
    if cmd == "write":
        return _run(_write, _write_parser("solarbridge giv write").parse_args(rest))
    if cmd == "rest":
        a = _rest_parser("solarbridge giv rest").parse_args(rest)
        from ..config import ConfigError
        try:
            return _rest(a)
        except ConfigError as e:
            print(f"solarbridge giv rest: error: {e}", file=sys.stderr)
            return 2
    if cmd == "discover":
        p = argparse.ArgumentParser(prog="solarbridge giv discover",
                                    description="Scan local /24 networks for GivEnergy dongles (TCP 8899)")
        p.add_argument("--network", action="append", help="CIDR to scan (repeatable; default: local /24s)")
        p.add_argument("--port", type=int, default=8899)
        p.add_argument("--timeout", type=float, default=1.0, help="connect timeout per address (default 1 s)")
        p.add_argument("--concurrency", type=int, default=64, help="connections in flight (default 64)")
        p.set_defaults(prog="solarbridge giv discover")
        return _run(_discover, p.parse_args(rest))
    print(f"solarbridge giv: unknown command {cmd!r}\n{usage}", file=sys.stderr)
    return 2
