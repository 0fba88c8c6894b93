"""`sunsynk-capture CONFIG.toml` (also `solarbridge capture -c CONFIG.toml`): the capture tool's command.

Reads the original tool's TOML (``[pcap]``, ``[[influxdb2]]``, ``[[mqtt]]``), captures live or reads a file,
and writes to the configured outputs through the generic sinks (InfluxDB with the durable spool and the
``sunsniff`` schema, MQTT with the ``sunsniff`` layout). In file mode it waits, once the file is read, until
every sink has delivered what was decoded (the MQTT broker acknowledged it, InfluxDB accepted it), then exits
0; what was not delivered within ``--drain-timeout`` (or before Ctrl-C) is named on stderr and the exit code
is 1. Config and capture problems are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from typing import Any

PROG = "sunsynk-capture"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Capture Sunsynk/Inteless dongle reports (live interface or "
                                "capture file) and publish them to InfluxDB v2 and MQTT. Never transmits.")
    p.add_argument("config", nargs="?", help="TOML config file")
    p.add_argument("-c", "--config", dest="config_opt", metavar="CONFIG", help="TOML config file (same as positional)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar in file mode")
    p.add_argument("--drain-timeout", type=float, default=0.0, metavar="S",
                   help="file mode: give up waiting for delivery after S seconds (default 0: wait until delivered)")
    return p


def _fail(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def _state_dir(cfg: Any) -> str:
    if cfg.state_dir is not None:
        return str(cfg.state_dir)
    from ..config import default_state_dir

    return str(default_state_dir() / "sunsynk-capture")


def _rename(msg: str, names: list[str]) -> str:
    """Daemon-config key paths (sinks[1].url) back to the user's sections (mqtt[0].url)."""
    def sub(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return names[i] if i < len(names) else m.group(0)

    return re.sub(r"sinks\[(\d+)\]", sub, msg).replace("sources[0].", "pcap.")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.config_opt or args.config
    if not path:
        return _fail("give the config file: sunsynk-capture CONFIG.toml")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    from ..config import ConfigError, build
    from ..sources.sunsynk.config import daemon_tables, load

    try:
        cfg = load(path)
    except ConfigError as e:
        return _fail(str(e))
    pcap = cfg.pcap
    # open what the capture needs now, so every problem is one line before anything starts
    if pcap.file:
        from ..capture.pcap import CaptureError, CaptureFile
        from ..sources.sunsynk.bpf import Filter, FilterError

        try:
            CaptureFile(pcap.device).close()
            Filter(pcap.filter)
        except (CaptureError, FilterError) as e:
            return _fail(str(e))
    else:
        from ..sources.sunsynk.live import CaptureError, LiveCapture

        try:
            LiveCapture(pcap.device, pcap.filter).close()
        except CaptureError as e:
            return _fail(str(e))

    source, sinks = daemon_tables(cfg)
    names = [f"influxdb2[{i}]" for i in range(len(cfg.influxdb2))] + [f"mqtt[{i}]" for i in range(len(cfg.mqtt))]
    raw = {"daemon": {"state_dir": _state_dir(cfg), "history": False}, "sources": [source], "sinks": sinks}
    try:
        dcfg = build(raw)
    except ConfigError as e:
        return _fail(f"{path}: {_rename(str(e), names)}")
    try:
        return asyncio.run(_run(dcfg, file_mode=pcap.file, progress=not args.no_progress and sys.stderr.isatty(),
                                drain_timeout=args.drain_timeout))
    except KeyboardInterrupt:
        return 130


class _Progress:
    def __init__(self) -> None:
        self.last = 0.0
        self.start = time.monotonic()
        self.reports = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        pct = 100.0 * done / total if total else 100.0
        width = 30
        fill = int(width * pct / 100)
        rate = done / max(now - self.start, 1e-6) / 1e6
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {pct:5.1f}% {done / 1e6:8.1f}/{total / 1e6:.1f} MB "
                         f"{rate:6.1f} MB/s {self.reports} reports")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def _run(dcfg: Any, *, file_mode: bool, progress: bool, drain_timeout: float) -> int:
    from ..util.signals import StopSignals

    with StopSignals() as signals:
        return await _capture(dcfg, signals.event, file_mode=file_mode, progress=progress,
                              drain_timeout=drain_timeout)


async def _capture(dcfg: Any, stop: asyncio.Event, *, file_mode: bool, progress: bool, drain_timeout: float) -> int:
    from ..runtime import Supervisor

    log = logging.getLogger("solarbridge.sunsynk_capture")
    sup = Supervisor(dcfg)
    sup.build()
    (src,) = sup.sources.values()
    bar = _Progress() if progress else None
    if bar is not None:
        def on_progress(done: int, total: int) -> None:
            bar.reports = src.pipeline.reports if src.pipeline else 0
            bar(done, total)

        src.progress = on_progress
    await sup.start()
    code = 0
    if not file_mode:
        await stop.wait()
        await sup.stop()
        return 0
    waiter = asyncio.create_task(sup.wait_sources())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if src.failed:
        code = 1
    h = src.ctx.health
    log.info("done reading: %s", {k: v for k, v in h.gauges.items()})
    # the file is read: every sink must now deliver what was decoded (not only spool it), connecting first
    # if need be, within --drain-timeout (0: until delivered or interrupted)
    undelivered = await sup.stop(deliver=True, timeout=drain_timeout if drain_timeout > 0 else None,
                                 interrupt=stop)
    for name, text in undelivered.items():
        print(f"{PROG}: not delivered: {_section(name)}: {text}", file=sys.stderr)
    if undelivered or stop.is_set():
        code = 1
    return code


def _section(sink_name: str) -> str:
    """Daemon sink names (mqtt-0) back to the user's config sections (mqtt[0])."""
    m = re.fullmatch(r"(influxdb2|mqtt)-(\d+)", sink_name)
    return f"{m.group(1)}[{m.group(2)}]" if m else sink_name

if __name__ == "__main__":
    sys.exit(main())
