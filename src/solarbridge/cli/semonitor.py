"""``semonitor``: SolarEdge inverter performance monitoring with the original's options.

    semonitor [-a] [-b baud] [-c cmd[/cmd...]] [-d debugfile] [-f] [-k keyfile] [-m] [-n interface]
              [-o outfile] [-p ports] [-r recfile] [-s inv[,inv...]] [-t 2|4|n] [-u updatefile]
              [-v...] [-x] [--pcap FILE] [datasource]

A thin driver: bytes from a transport go through :class:`~solarbridge.sources.solaredge.session.Monitor`;
its actions (JSON objects, replies) go to the output, the peer and the record file.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # typing is not imported at run time: it would add 3 ms to every start
if TYPE_CHECKING:
    import argparse
    from typing import Any, BinaryIO

LOG_DATA = 9
LOG_RAW = 8
DEBUG, INFO, ERROR = 10, 20, 40  # logging's levels
MASTER_TIMEOUT = 10.0
MASTER_PAUSE = 5.0
COMMAND_DELAY = 2.0
COMMAND_TIMEOUT = 10.0



class _ErrorsToStderr:
    """The logger of the default run (errors only, to stderr, as the message alone): it saves
    importing :mod:`logging` at start-up. :func:`setup_logging` replaces it for -v or -d."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= ERROR

    def log(self, level: int, msg: str, *args: Any) -> None:
        if level >= ERROR:
            sys.stderr.write((msg % args if args else msg) + "\n")
            sys.stderr.flush()

    def error(self, msg: str, *args: Any) -> None:
        self.log(ERROR, msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        pass

    def debug(self, msg: str, *args: Any) -> None:
        pass


log: Any = _ErrorsToStderr()


def _commands(text: str) -> Any:
    import argparse

    from ..sources.solaredge.commands import CommandError, parse_commands

    try:
        return parse_commands(text)
    except CommandError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _slaves(text: str) -> list[int]:
    import argparse
    import re

    out = []
    for s in text.split(","):
        if not re.fullmatch(r"[0-9a-fA-F]{1,8}", s):
            raise argparse.ArgumentTypeError(f"Invalid slave ID: {s} (hex inverter id, e.g. 7f104920)")
        out.append(int(s, 16))
    return out


def _ports(text: str) -> list[int]:
    import argparse

    out = []
    for p in text.split(","):
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise argparse.ArgumentTypeError(f"Invalid port number: {p} (1..65535)")
        out.append(int(p))
    return out


#: every option's default (the parser's and :func:`plain_args`'s)
DEFAULTS: dict[str, Any] = {
    "append": False, "baudrate": 115200, "commands": [], "logfile": "stderr", "follow": False, "keyfile": None,
    "master": False, "interface": None, "outfile": "stdout", "ports": [22222, 22221, 80], "record": None,
    "slaves": [], "type": None, "updatefile": None, "verbose": 0, "xerror": False, "pcap": None, "listen": "",
    "command_delay": COMMAND_DELAY, "master_pause": MASTER_PAUSE, "datasource": "stdin",
}


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        #: while the parser is built, argparse makes a formatter per argument only to check its metavar:
        #: give it a fixed width, so start-up does not import shutil and ask for the terminal size 20 times
        building = True

        def _get_formatter(self) -> argparse.HelpFormatter:
            if self.building:
                return self.formatter_class(prog=self.prog, width=80)  # type: ignore[call-arg]
            return super()._get_formatter()

        def error(self, message: str) -> Any:  # original: usage + message, exit 2
            self.print_usage(sys.stderr)
            sys.stderr.write(f"semonitor: error: {message}\n")
            raise SystemExit(2)

    d = DEFAULTS
    p = Parser(prog="semonitor", description="Parse SolarEdge data to extract inverter and optimizer telemetry")
    p.add_argument("-a", dest="append", action="store_true", help="append to output and record files")
    p.add_argument("-b", dest="baudrate", type=int, default=d["baudrate"], help="baud rate for a serial data source")
    p.add_argument("-c", dest="commands", type=_commands, default=d["commands"],
                   help="send command functions, e.g. 12,H239/12,H23a")
    p.add_argument("-d", dest="logfile", default=d["logfile"], help="log to stderr, stdout, syslog or a file")
    p.add_argument("-f", dest="follow", action="store_true", help="wait for data appended to the input file")
    p.add_argument("-k", dest="keyfile", help="key file (32 hex chars) for encrypted inverters")
    p.add_argument("-m", dest="master", action="store_true", help="function as an RS485 master")
    p.add_argument("-n", dest="interface", help="run DHCP and DNS for the inverter on this interface (network mode)")
    p.add_argument("-o", dest="outfile", default=d["outfile"], help="JSON output file (default stdout)")
    p.add_argument("-p", dest="ports", type=_ports, default=d["ports"], help="ports to listen on in network mode")
    p.add_argument("-r", dest="record", help="record every byte read and sent to this file")
    p.add_argument("-s", dest="slaves", type=_slaves, default=d["slaves"], help="comma separated inverter ids (hex)")
    p.add_argument("-t", dest="type", choices=["2", "4", "n"], help="2=RS232, 4=RS485, n=network")
    p.add_argument("-u", dest="updatefile", help="write firmware update data (0x0021) to this file")
    p.add_argument("-v", dest="verbose", action="count", default=d["verbose"], help="verbose: -v info .. -vvvv raw data")
    p.add_argument("-x", dest="xerror", action="store_true", help="stop on the first data error")
    p.add_argument("--pcap", metavar="FILE", help="decode a pcap/pcapng capture (or directory) directly")
    p.add_argument("--listen", default=d["listen"], metavar="ADDR",
                   help="network mode: address to listen on (default all)")
    p.add_argument("--command-delay", type=float, default=d["command_delay"], help=argparse.SUPPRESS)
    p.add_argument("--master-pause", type=float, default=d["master_pause"], help=argparse.SUPPRESS)
    p.add_argument("datasource", nargs="?", default=d["datasource"], help="input file, serial port or - for stdin")
    p.building = False
    return p


class Options:
    """The options of a plain run (:func:`plain_args`): the attributes argparse's namespace would have."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


#: the flags plain_args takes (all store_true), by option
_PLAIN_FLAGS = {"-a": "append", "-f": "follow", "-x": "xerror"}


def plain_args(argv: list[str]) -> Options | None:
    """The options of the usual command lines (``[-a] [-f] [-x] [-v..] [-o FILE] [datasource]``) without
    argparse, or None for anything else (argparse parses it, with its messages).

    A decoding run then starts without importing argparse, re, gettext and locale: 7 ms of CPU time
    per file, 3-5 % of decoding a 2.6 MB recording. Tests hold it to argparse's result.
    """
    values = dict(DEFAULTS)
    positional = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in _PLAIN_FLAGS:
            values[_PLAIN_FLAGS[arg]] = True
        elif arg == "-o" and i < len(argv) and argv[i][:1] != "-":
            values["outfile"] = argv[i]
            i += 1
        elif arg[:2] == "-v" and arg.count("v") == len(arg) - 1:
            values["verbose"] += len(arg) - 1
        elif (arg == "-" or arg[:1] != "-") and not positional:
            values["datasource"] = arg
            positional = True
        else:
            return None
    return Options(**values)


class _LazyParser:
    """The parser for a plain run's errors (validate's ``p.error``): built only when there is one."""

    def error(self, message: str) -> Any:
        build_parser().error(message)


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)


class Mode:
    def __init__(self, serial: bool, network: bool, master: bool, commands: bool, follow: bool) -> None:
        self.serial, self.network, self.master, self.commands, self.follow = serial, network, master, commands, follow


def validate(p: argparse.ArgumentParser, a: argparse.Namespace) -> Mode:
    from ..sources.solaredge.transports import is_serial_device

    if a.datasource == "-":
        a.datasource = "stdin"
    serial = False
    network = a.type == "n" or bool(a.interface)
    if a.pcap:
        if network or a.type or a.master or a.commands:
            p.error("--pcap decodes a capture file; it cannot be combined with -t, -n, -m or -c")
        if a.datasource != "stdin":
            p.error("--pcap FILE replaces the datasource; give one or the other")
        if a.pcap != "-" and not _exists(a.pcap):
            p.error(f"no such capture file or directory: {a.pcap}")  # as seextract
    if network:
        if a.datasource != "stdin":
            p.error("Input file cannot be specified for network mode")
        if a.type in ("2", "4"):
            p.error("-n runs network mode; it cannot be combined with -t 2 or -t 4")
    elif a.datasource != "stdin":
        serial = is_serial_device(a.datasource)
    if serial:
        a.follow = True
        if a.type not in ("2", "4"):
            p.error("Input device type 2 or 4 must be specified for serial device")
    elif a.type in ("2", "4"):
        p.error(f"{a.datasource} is not a valid serial device\n"
                "Input device types 2 and 4 are only valid for a serial device")
    if a.master:
        if a.type != "4":
            p.error("Master mode only allowed with RS485 serial device")
        if len(a.slaves) < 1:
            p.error("At least one slave address must be specified for master mode")
    if a.commands:
        if len(a.slaves) != 1:
            p.error("Exactly one slave address must be specified for command mode")
        if not serial and not network:
            p.error("Command mode needs a serial device (-t 2 or -t 4) or network mode (-t n), not a file")
    if a.baudrate <= 0:
        p.error(f"-b baud rate must be positive, got {a.baudrate}")
    return Mode(serial, network, a.master, bool(a.commands), a.follow)


def setup_logging(a: argparse.Namespace) -> None:
    global log
    if a.logfile == "stderr" and not a.verbose:
        return  # errors only, to stderr: the _ErrorsToStderr logger does that
    import logging

    log = logging.getLogger("semonitor")
    logging.addLevelName(LOG_DATA, "DATA")
    logging.addLevelName(LOG_RAW, "RAW")
    plain = logging.Formatter("%(message)s")
    if a.logfile == "syslog":
        from logging.handlers import SysLogHandler  # lazy: it pulls in socket, pickle and queue

        handler: logging.Handler = SysLogHandler(address="/dev/log")
    elif a.logfile == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif a.logfile == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        handler = logging.FileHandler(a.logfile, mode="a" if a.append else "w")
        plain = logging.Formatter("%(asctime)s %(message)s", datefmt="%b %d %H:%M:%S")
    handler.setFormatter(plain)
    level = {1: INFO, 2: DEBUG, 3: LOG_DATA, 4: LOG_RAW}.get(min(a.verbose, 4), ERROR)
    log.setLevel(level)
    log.addHandler(handler)
    log.propagate = False


def hexdump(data: bytes) -> list[str]:
    """The original's ``-vvvv`` format (``debug2hex`` turns it back into bytes)."""
    return ["data:       " + data[i:i + 16].hex(" ") for i in range(0, len(data), 16)]


class Runner:
    def __init__(self, a: argparse.Namespace, mode: Mode, out: BinaryIO | None, rec: BinaryIO | None,
                 key: bytes | None = None) -> None:
        from ..sources.solaredge.session import Monitor

        self.a, self.mode, self.out, self.rec = a, mode, out, rec
        self.monitor = Monitor(reply=mode.network or mode.master, key=key, collect_update=bool(a.updatefile),
                               render=True)
        self.stream: Any = None
        self.n_in = 0
        self.n_out = 0
        self.errors = 0
        self.reported = 0  # command results written
        self.status = 0
        self.wrote = False

    # ------------------------------------------------------------------ I/O helpers
    def record(self, data: bytes) -> None:
        if self.rec is not None:
            self.rec.write(data)
            self.rec.flush()

    def send(self, data: bytes) -> None:
        self.n_out += 1
        if log.isEnabledFor(DEBUG):
            log.debug("%s <-- message: %d length: %d", self.stream.name, self.n_out, len(data))
            if log.isEnabledFor(LOG_RAW):
                for line in hexdump(data):
                    log.log(LOG_RAW, line)
        self.stream.write(data)
        self.record(data)

    def write_lines(self, lines: list[bytes]) -> None:
        """Output lines (JSON texts, latin-1) with one write; the file is flushed at the end of each chunk read."""
        if self.out is not None and lines:
            if log.isEnabledFor(LOG_DATA):
                for text in lines:
                    log.log(LOG_DATA, text.decode("latin-1"))
            lines.append(b"")  # the last line's newline
            self.out.write(b"\n".join(lines))
            self.wrote = True

    def render(self, data: bytes) -> None:
        """Received bytes of a passive run without debug output: only the JSON lines matter."""
        self.record(data)
        lines, frames, failed = self.monitor.render_lines(data)
        self.n_in += frames
        for before, act in failed:
            self.errors += 1
            log.info("Failed to parse message: %s", act.error)
            if self.a.xerror:
                self.write_lines(lines[:before])
                if self.out is not None:
                    self.out.flush()
                raise DataError(str(act.error))
        if lines:
            self.write_lines(lines)
            if self.out is not None:
                self.out.flush()  # once per chunk read: readers following the file see whole lines promptly
            self.wrote = False

    def handle(self, data: bytes) -> list[Any]:
        """Feed received bytes; perform the resulting actions; return the Received frames."""
        from ..sources.solaredge.functions import function_name
        from ..sources.solaredge.jsonout import dumps
        from ..sources.solaredge.session import Failed, Output, Received, Send

        self.record(data)
        received = []
        lines: list[bytes] = []  # written once per chunk
        debug = log.isEnabledFor(DEBUG)
        for act in self.monitor.receive(data):
            kind = type(act)
            if kind is Output:
                if not self.mode.commands:
                    lines.append(dumps(act.obj).encode("latin-1") if act.raw is None else act.raw)
            elif kind is Received:
                self.n_in += 1
                fr = act.frame
                if debug:
                    log.debug("%s --> message: %d length: %d function: %04x %s seq: %04x from: %08x to: %08x%s",
                              self.stream.name, self.n_in, len(fr.payload) + 22, fr.function,
                              function_name(fr.function), fr.seq, fr.src, fr.dst,
                              " (decrypted)" if act.encrypted else "")
                    if log.isEnabledFor(LOG_RAW):
                        for line in hexdump(fr.payload):
                            log.log(LOG_RAW, line)
                received.append(act)
            elif kind is Send:
                self.send(act.data)
            elif kind is Failed:
                self.errors += 1
                log.info("Failed to parse message: %s", act.error)
                if self.a.xerror:
                    self.write_lines(lines)
                    if self.out is not None:
                        self.out.flush()
                    raise DataError(str(act.error))
        self.write_lines(lines)
        if self.wrote and self.out is not None:
            self.out.flush()  # once per chunk read: readers following the file see whole lines promptly
            self.wrote = False
        return received

    def finish_stream(self) -> None:
        self.monitor.finish()
        drops = self.monitor.decoder.drops + self.monitor.drops
        if drops:
            log.info("dropped: %s", ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))

    # ------------------------------------------------------------------ modes
    def passive(self) -> None:
        take = self.take()
        while True:
            data = self.stream.read(1.0)
            if data is None:
                log.info("End of file")
                break
            if data:
                take(data)
        self.finish_stream()

    def take(self) -> Any:
        """What to do with received bytes: the whole session, or only its JSON lines when that is all."""
        if self.monitor.plain_render and not self.mode.commands and not log.isEnabledFor(DEBUG):
            return self.render
        return self.handle

    def drive(self, exchange: Any) -> bool:
        """Run a master or command exchange of the session (sans-IO) over the stream.

        Returns False when the stream ended, True when the exchange is done (commands).
        """
        now = time.monotonic
        timeouts = 0
        self.send_frames(exchange.poll(now()))
        while not getattr(exchange, "done", False):
            data = self.stream.read(min(0.5, max(0.0, exchange.wake_at - now())))
            if data is None:
                return False
            for r in self.handle(data) if data else []:
                self.send_frames(exchange.received(r, now()))
            self.send_frames(exchange.poll(now()))
            if getattr(exchange, "timeouts", 0) != timeouts:
                timeouts = exchange.timeouts
                log.debug("RS485 master ack timeout for %08x", exchange.timed_out)
            self.report(exchange)
        return True

    def send_frames(self, frames: list[Any]) -> None:
        for f in frames:
            self.send(self.monitor.frame_bytes(f))

    def report(self, exchange: Any) -> None:
        """Command answers as they come (``-c``): one output line each, or an error for no answer."""
        from ..sources.solaredge.jsonout import command_line

        results = getattr(exchange, "results", ())
        while self.reported < len(results):
            cmd, seq, answer = results[self.reported]
            self.reported += 1
            if answer is None:
                log.error("no response from %08X to command %s", exchange.slave, cmd.text)
                self.status = 1
            elif self.out is not None:
                self.out.write(command_line(cmd.function, answer.frame.function, seq, answer.data))
                self.out.flush()

    def master(self, slaves: list[int]) -> None:
        from ..sources.solaredge.commands import next_seq
        from ..sources.solaredge.session import MasterPoll

        self.drive(MasterPoll(slaves, grant_timeout=MASTER_TIMEOUT, pause=self.a.master_pause, next_seq=next_seq))

    def commands(self) -> int:
        from ..sources.solaredge.commands import next_seq
        from ..sources.solaredge.session import CommandRun

        run = CommandRun(self.a.slaves[0], self.a.commands, grant=self.mode.master, delay=self.a.command_delay,
                         timeout=COMMAND_TIMEOUT, next_seq=next_seq)
        if not self.drive(run):
            # the stream ended: the commands not answered by then never will be (as the original)
            while not run.done:
                run.poll(float("inf"))
            self.report(run)
        return self.status


class DataError(Exception):
    pass


def _open_out(path: str | None, append: bool) -> BinaryIO | None:
    if not path:
        return None
    return open(path, "ab" if append else "wb")  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    p: Any = _LazyParser()
    a: Any = plain_args(sys.argv[1:] if argv is None else argv)
    if a is None:
        p = build_parser()
        a = p.parse_args(argv)
    mode = validate(p, a)
    setup_logging(a)
    try:
        out = sys.stdout.buffer if a.outfile == "stdout" else _open_out(a.outfile, a.append)
        rec = _open_out(a.record, a.append)
    except OSError as e:
        print(f"semonitor: cannot open {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    key = None
    if a.keyfile:
        from ..sources.solaredge.crypto import KeyError_, read_key_file  # lazy: only -k needs it

        try:
            key = read_key_file(a.keyfile)
        except KeyError_ as e:
            print(f"semonitor: -k: {e}", file=sys.stderr)
            return 2
    runner = Runner(a, mode, out, rec, key)
    try:
        return _run(a, mode, runner)
    except DataError as e:
        print(f"semonitor: data error (-x): {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if a.updatefile and runner.monitor.update is not None:
            from ..util.atomic import atomic_write

            atomic_write(a.updatefile, bytes(runner.monitor.update))
        if rec is not None:
            rec.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()


def _run(a: argparse.Namespace, mode: Mode, runner: Runner) -> int:
    from ..sources.solaredge import transports

    if a.pcap:
        return _pcap(a, runner)
    if mode.network:
        return _network(a, mode, runner)
    log.info("opening %s", a.datasource)
    try:
        if mode.serial:
            runner.stream = transports.SerialStream(a.datasource, a.baudrate)
        else:
            runner.stream = transports.FileStream(a.datasource, follow=a.follow)
    except OSError as e:
        print(f"semonitor: cannot open {a.datasource}: {e.strerror or e}", file=sys.stderr)
        return 1 if not mode.serial else 2  # the original: 1 (a traceback) for an input file it cannot open
    try:
        if mode.commands:
            return runner.commands()
        if mode.master:
            runner.master(a.slaves)
            return 0
        runner.passive()
        _no_frames(runner.monitor, a.datasource)
        return 0
    finally:
        runner.stream.close()


def _no_frames(monitor: Any, name: str) -> None:
    """Say so when a whole input held no SolarEdge frame (the original exits 0 silently; so do we, but not silently)."""
    dec = monitor.decoder
    if dec.bytes_in and not dec.frames:
        print(f"semonitor: {name}: no SolarEdge frames found in {dec.bytes_in} bytes", file=sys.stderr)


def _pcap(a: argparse.Namespace, runner: Runner) -> int:
    """``--pcap``: the stream out of a capture, as seextract extracts it; errors as seextract reports them."""
    import logging

    from ..sources.solaredge.extract import DEFAULT_SERVER, SERVER_PORTS, iter_streams, make_extractor

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("semonitor: %(message)s"))
    for name, level in (("solarbridge.capture", logging.WARNING),
                        # the default server's name not resolving is normal offline: only with -v
                        ("solarbridge.solaredge.extract", logging.INFO if a.verbose else logging.ERROR)):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False

    class _Named:
        name = a.pcap

    runner.stream = _Named()
    take = runner.take()
    ex = make_extractor(None)
    for chunk in iter_streams(a.pcap, follow=a.follow, extractor=ex):
        take(chunk)
    runner.finish_stream()
    st = ex.stats
    if st.get("capture_errors") and not st.get("packets"):
        return 1  # nothing readable at all (the reason is on stderr already)
    if not st.get("connections"):
        print(f"semonitor: no TCP connection to {DEFAULT_SERVER} or port {','.join(map(str, SERVER_PORTS))} "
              f"found in {a.pcap}", file=sys.stderr)
    else:
        _no_frames(runner.monitor, a.pcap)
    return 0


def _network(a: argparse.Namespace, mode: Mode, runner: Runner) -> int:
    from ..sources.solaredge import transports

    services = None
    if a.interface:
        from ..sources.solaredge import netservices

        try:
            services = netservices.start(a.interface)
        except netservices.NetServicesError as e:
            print(f"semonitor: -n {a.interface}: {e}", file=sys.stderr)
            return 2
    try:
        while True:
            try:
                listeners = transports.listen(a.ports, a.listen)
            except OSError as e:
                print(f"semonitor: {e.strerror}", file=sys.stderr)
                return 2
            log.info("waiting for connection on ports %s", ",".join(map(str, a.ports)))
            try:
                stream = transports.accept(listeners)
            finally:
                for s in listeners:
                    s.close()
            if stream is None:
                return 0
            log.info("connection from %s", stream.name)
            runner.stream = stream
            try:
                if mode.commands:
                    return runner.commands()
                runner.passive()
            finally:
                stream.close()
            runner.monitor.decoder = type(runner.monitor.decoder)()
    finally:
        if services is not None:
            services.stop()


if __name__ == "__main__":
    raise SystemExit(main())
