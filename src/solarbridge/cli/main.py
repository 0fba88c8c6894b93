"""The `solarbridge` command. Sub-commands import their machinery only when they run, so
`solarbridge --help` starts fast and pulls in no device or server library."""

from __future__ import annotations

import argparse
import sys

from .. import __version__

DESCRIPTION = "Get your own data off your own solar and battery hardware: one daemon, many sources and sinks."
EPILOG = """\
commands of the seed-compatible tools are installed too: enphase-monitor, semonitor, sekey, seextract,
se2state, se2csv, se2graphite, pickle2graphite, givtcp-read, givtcp-write, givtcp-rest, sunsynk-capture.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solarbridge", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"solarbridge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run the daemon from a TOML config")
    r.add_argument("-c", "--config", required=True, help="TOML config file")
    r.add_argument("--duration", type=float, default=0,
                   help="stop after this many seconds, once every sink has delivered (0: until Ctrl-C); exit 1"
                   " naming what was not delivered within [daemon] shutdown_timeout")
    _common(r)

    d = sub.add_parser("demo", help="run every built-in simulator into local sinks and the dashboard")
    d.add_argument("--dir", default="demo-data", help="where the demo writes its files (default: ./demo-data)")
    d.add_argument("--listen", default="127.0.0.1:8080", help="dashboard address (default 127.0.0.1:8080)")
    d.add_argument("--no-api", action="store_true", help="do not start the web dashboard")
    d.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    _common(d)

    c = sub.add_parser("check-config", help="validate a config and print it resolved, secrets masked")
    c.add_argument("-c", "--config", required=True)
    c.add_argument("--format", choices=("toml", "json"), default="json")

    h = sub.add_parser("history", help="query the embedded history store")
    h.add_argument("--db", help="history database (default: from -c config, else the default state dir)")
    h.add_argument("-c", "--config", help="daemon config, to find the history database")
    h.add_argument("--device", help="device id (omit to list the stored series)")
    h.add_argument("--metric", help="metric name")
    h.add_argument("--since", help="start: a duration ago (1h, 7d), ISO time or epoch (default 1h; with --energy"
                   " the last 7 days, 12 months or 5 years)")
    h.add_argument("--until", default="now", help="end (default now)")
    h.add_argument("--step", help="downsample to buckets of this duration (e.g. 5m) with min/mean/max")
    h.add_argument("--format", choices=("table", "csv", "json"), default="table")
    h.add_argument("--energy", action="store_true", help="energy of a site per day, month or year (kWh)")
    h.add_argument("--site", help="with --energy: the site name (omit to list the sites with energy history)")
    h.add_argument("--by", choices=("day", "month", "year"), default="day", help="with --energy: period (default day)")
    h.add_argument("--tz", help="with --energy: IANA time zone of the days (default: the site's, else local)")

    # listed for `solarbridge --help`; main() hands their arguments to their own parsers (PASS_THROUGH)
    sub.add_parser("simulate", help="run a device simulator (enphase, solaredge, givenergy, sunsynk)")
    sub.add_parser("giv", help="GivEnergy: read, write, discover, rest (GivTCP-compatible)")
    sub.add_parser("capture", help="Sunsynk dongle passive capture (same as sunsynk-capture -c FILE)")
    return p


#: sub-commands whose own parser reads everything after the name (including -h/--help)
PASS_THROUGH = ("simulate", "giv", "capture")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `solarbridge history | head`
        from .pipes import reader_went_away

        return reader_went_away()


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in PASS_THROUGH:
        # argparse's REMAINDER does not take a leading option such as --help, so hand these over whole
        cmd, rest = argv[0], argv[1:]
        if cmd == "simulate":
            return _simulate(rest[0] if rest else None, rest[1:])
        if cmd == "giv":
            from .givtcp import giv_main

            return giv_main(rest)
        from .sunsynk_capture import main as capture_main

        return capture_main(rest)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        from .daemon import run_daemon

        return run_daemon(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args)
    if args.command == "check-config":
        from .daemon import check_config

        return check_config(args)
    if args.command == "history":
        from .history import history

        return history(args)
    parser.print_help()
    return 2


def _simulate(family: str | None, rest: list[str]) -> int:
    from .. import registry

    names = ", ".join(sorted(registry.SIMULATORS))
    if not family or family in ("-h", "--help"):
        print(f"usage: solarbridge simulate {{{names}}} [options]\n\nrun `solarbridge simulate NAME --help` for "
              "a simulator's options", file=sys.stdout if family else sys.stderr)
        return 0 if family else 2
    if family not in registry.SIMULATORS:
        print(f"solarbridge simulate: unknown simulator {family!r} (allowed: {names})", file=sys.stderr)
        return 2
    mod = registry.load(registry.SIMULATORS[family])
    return int(mod.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
