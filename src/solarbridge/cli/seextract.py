"""``seextract``: the SolarEdge byte stream (what semonitor reads) out of pcap/pcapng captures."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from solarbridge.util.signals import StopSignals

DESCRIPTION = """\
Extract the TCP stream between a SolarEdge inverter and its monitoring server from packet captures
(pcap or pcapng, e.g. from tcpdump), with TCP reassembly, and write the raw protocol byte stream
that semonitor reads:

  seextract -o inverter.dat capture.pcap && semonitor -o inverter.json inverter.dat
  seextract -f /data/pcap | semonitor -f -o inverter.json -

A directory is processed file by file in name order (a TCP connection may continue from one file
into the next); with -f the newest file in it is followed and seextract moves to a newer one when
it appears. Without a capture argument the capture is read from stdin (tcpdump -U -w - ...).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seextract", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-a", dest="append", action="store_true", help="append to the output file")
    p.add_argument("-f", dest="follow", action="store_true",
                   help="follow: a file as it grows, a directory's newest file (switching to newer ones)")
    p.add_argument("-o", dest="outfile", metavar="outfile", help="output file (default: stdout)")
    p.add_argument("-s", dest="server", metavar="server",
                   help="server name or address (default: prod.solaredge.com; if the name does not "
                        "resolve, connections on port 22222 are taken)")
    p.add_argument("-v", dest="verbose", action="count", default=0,
                   help="-v: statistics at the end, -vv: each connection and file")
    p.add_argument("--direction", choices=("both", "to-server", "from-server"), default="both",
                   help="which side's bytes to keep (default both; the original kept to-server with -s)")
    p.add_argument("--port", dest="ports", action="append", type=_port, metavar="PORT",
                   help="also take connections on this server port (repeatable; default 22222 when "
                        "the server's address is unknown)")
    p.add_argument("--poll", type=_positive, default=1.0, metavar="SECONDS",
                   help="how often -f looks for new data and newer files (default 1)")
    p.add_argument("capture", nargs="?", default="-", metavar="pcapFile|directory",
                   help="capture file or directory of captures (default: stdin)")
    return p


def _port(text: str) -> int:
    from solarbridge.util.ports import tcp_port

    try:
        return tcp_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"port {e}") from None


def _positive(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not 0.01 <= x <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds 0.01..3600, got {text!r}")
    return x


class _Output:
    """Where the stream goes. A new file (no -a, no -f) is replaced atomically at the end."""

    def __init__(self, outfile: str | None, append: bool, streaming: bool) -> None:
        self.final: Path | None = None
        self.tmp: str | None = None
        self.f: BinaryIO
        if outfile is None or outfile == "-":
            self.f = sys.stdout.buffer
            self.owned = False
            return
        self.owned = True
        if append or streaming:
            self.f = open(outfile, "ab" if append else "wb")  # noqa: SIM115 - closed in close()
            return
        self.final = Path(outfile)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=".tmp",
                                        dir=self.final.parent)
        self.f = os.fdopen(fd, "wb")

    def write(self, data: bytes, flush: bool) -> None:
        self.f.write(data)
        if flush:
            self.f.flush()

    def close(self, ok: bool) -> None:
        if not self.owned:
            with contextlib.suppress(OSError):
                self.f.flush()
            return
        self.f.close()
        if self.tmp is not None:
            if ok:
                assert self.final is not None
                with contextlib.suppress(OSError):
                    os.chmod(self.tmp, 0o644 & ~_umask())
                os.replace(self.tmp, self.final)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.server is not None and not args.server.strip():
        parser.error("-s: the server name or address must not be empty")
    if args.append and not args.outfile:
        parser.error("-a needs -o outfile")
    if args.capture != "-" and not os.path.exists(args.capture):
        parser.error(f"no such capture file or directory: {args.capture}")
    logging.basicConfig(level=logging.WARNING if args.verbose < 2 else logging.INFO,
                        format="seextract: %(message)s", stream=sys.stderr)

    from solarbridge.util.signals import StopSignals

    follow = args.follow or args.capture == "-"
    with StopSignals() if follow else contextlib.nullcontext() as stop:
        return _extract(args, parser, follow, stop)


def _extract(args: argparse.Namespace, parser: argparse.ArgumentParser, follow: bool,
             stop: StopSignals | None) -> int:
    from solarbridge.sources.solaredge.extract import DEFAULT_SERVER, iter_streams, make_extractor

    ex = make_extractor(args.server, direction=args.direction, ports=args.ports)
    try:
        out = _Output(args.outfile, args.append, follow)
    except OSError as e:
        parser.error(f"cannot write {args.outfile}: {e.strerror}")
    ok = False
    try:
        for chunk in iter_streams(args.capture, extractor=ex, follow=args.follow,
                                  poll_interval=args.poll, should_stop=lambda: stop is not None and stop.is_set()):
            out.write(chunk, flush=follow)
        # nothing readable at all: leave an existing output file as it was
        ok = not (ex.stats.get("capture_errors") and not ex.stats.get("packets"))
    except KeyboardInterrupt:
        ok = True
    except BrokenPipeError:
        ok = True
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        out.close(ok)
    st = ex.stats
    if args.verbose:
        print("seextract: " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())), file=sys.stderr)
    if not st.get("connections"):
        wanted = [args.server or DEFAULT_SERVER] + [f"port {p}" for p in sorted(ex.ports)]
        print(f"seextract: no TCP connection to {' or '.join(wanted)} found in {args.capture}",
              file=sys.stderr)
    if st.get("capture_errors") and not st.get("packets"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
