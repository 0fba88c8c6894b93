"""se2graphite: send semonitor JSON lines to Graphite over Carbon's plaintext protocol (port 2003).

Also the shared body of ``pickle2graphite`` (the same metrics, sent as pickle batches).
Metric paths are built as the original: ``[base.]<deviceType>.<id>.<field>``, numeric fields only,
timestamp from the record's local Date and Time.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .jsonlines import InputError, JsonLines, add_help_argument, add_input_arguments, run

ORIGINAL_DELAY = {"text": 0.1, "pickle": 0.2}
DEFAULT_PORT = {"text": 2003, "pickle": 2004}

DESCRIPTION = {
    "text": "Send SolarEdge metrics from semonitor JSON lines to Graphite, one plaintext line "
            "'path value timestamp' per numeric field.",
    "pickle": "Send SolarEdge metrics from semonitor JSON lines to Graphite's pickle port, one batch "
              "(4-byte big-endian length + pickled list of (path, (timestamp, value))) per JSON line.",
}

EPILOG = (
    "Paths are [BASE.]<deviceType>.<id>.<field>, e.g. solar.inverters.7F104920.Pac; only JSON numbers "
    "are sent (no strings, NaN or infinity). Timestamps come from each record's Date and Time, read "
    "in the local time zone (or --tz). If Carbon goes away the command reconnects with backoff and "
    "sends again everything Carbon may not have read, so no line is lost."
)


def build_parser(protocol: str) -> argparse.ArgumentParser:
    prog = "se2graphite" if protocol == "text" else "pickle2graphite"
    p = argparse.ArgumentParser(prog=prog, add_help=False, description=DESCRIPTION[protocol], epilog=EPILOG)
    p.add_argument("-b", "--base", default="", help="first path component(s), e.g. 'solar' (default: none)")
    p.add_argument("-h", "--host", default="localhost", help="Carbon host (default: localhost)")
    p.add_argument("-p", "--port", type=_port, default=DEFAULT_PORT[protocol],
                   help=f"Carbon {'plaintext' if protocol == 'text' else 'pickle'} port "
                        f"(default: {DEFAULT_PORT[protocol]})")
    unit = "metric" if protocol == "text" else "batch (JSON line)"
    p.add_argument("--delay", type=_seconds, default=ORIGINAL_DELAY[protocol],
                   help=f"seconds to wait after each {unit}, the original's pacing "
                        f"(default: {ORIGINAL_DELAY[protocol]}); 0 sends as fast as Carbon reads")
    p.add_argument("--tz", default=None, help="time zone of the Date/Time fields, e.g. Europe/Berlin "
                                              "(default: this host's local time, as the original)")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="connect timeout in seconds (default: 10)")
    p.add_argument("--retry-for", type=_seconds, default=None, metavar="SECONDS",
                   help="give up (exit 1) when Carbon has been unreachable this long (default: retry forever)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plaintext lines to stdout instead of sending them")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary at the end")
    add_input_arguments(p)
    add_help_argument(p)
    return p


def _port(text: str) -> int:
    from ..util.ports import tcp_port

    try:
        return tcp_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{value} out of range (use 0 to 3600 seconds)")
    return value


def _zone(name: str | None) -> Any:
    if not name:
        return None
    from ..util.timeparse import zone

    try:
        return zone(name)
    except ValueError as e:
        raise InputError(f"--tz: {e}", exit_code=2) from None


def send_metrics(args: argparse.Namespace, protocol: str, prog: str) -> int:
    from ..sinks.graphite.wire import encode_text, pickle_frames, sanitize_path
    from ..sources.solaredge.converters import PointStats, timed_values

    tz = _zone(args.tz)
    client = None

    def caught_up() -> None:
        # waiting for more input: make sure Carbon has read what was sent so far
        if client is not None and client.unconfirmed():
            client.confirm(retry_for=args.retry_for)

    reader = JsonLines(args.infile, follow=args.follow, strict=args.strict,
                       progress=False if args.no_progress else None, prog=prog, on_idle=caught_up)
    stats = PointStats()
    if not args.dry_run:
        from ..sinks.graphite.sink import GraphiteClient

        client = GraphiteClient(args.host, args.port, timeout=args.timeout, status=reader.warn)
    out = sys.stdout.buffer
    delay = args.delay
    try:
        for _lineno, obj in reader:
            points = [(sanitize_path(path), ts, v) for path, ts, v in timed_values(obj, args.base, tz, stats)]
            if not points:
                continue
            if client is None:
                out.write(encode_text(points))
                out.flush()
            elif protocol == "text" and delay > 0:
                for p in points:
                    client.send(encode_text((p,)), 1, retry_for=args.retry_for)
                    time.sleep(delay)
            elif protocol == "text":
                client.send(encode_text(points), len(points), retry_for=args.retry_for)
            else:
                for frame, n in pickle_frames(points):
                    client.send(frame, n, retry_for=args.retry_for)
                if delay > 0:
                    time.sleep(delay)
        if client is not None:
            client.confirm(retry_for=args.retry_for)
    except BrokenPipeError:
        if client is None:  # --dry-run into a closed pipe (| head): the reader has what it wanted
            raise
        raise InputError(f"Carbon closed the connection; {client.unconfirmed()} point(s) not confirmed") from None
    except ConnectionError as e:
        raise InputError(f"{e}; {client.unconfirmed() if client else 0} point(s) not confirmed") from None
    finally:
        if client is not None:
            client.close(confirm=False)
    if stats.untimed:
        reader.warn(f"{stats.untimed} record(s) without a valid Date/Time were skipped")
    if args.verbose:
        where = "stdout" if client is None else f"{args.host}:{args.port}"
        reader.warn(f"{stats.points} metric(s) from {reader.lines} line(s) sent to {where}"
                    f"{f', {reader.bad} malformed line(s) skipped' if reader.bad else ''}"
                    f"{f', {client.reconnects} reconnect(s)' if client and client.reconnects else ''}")
    return 0


def tool_main(protocol: str, argv: list[str] | None) -> int:
    prog = "se2graphite" if protocol == "text" else "pickle2graphite"
    args = build_parser(protocol).parse_args(argv)
    return run(prog, lambda: send_metrics(args, protocol, prog))


def main(argv: list[str] | None = None) -> int:
    return tool_main("text", argv)


if __name__ == "__main__":
    sys.exit(main())
