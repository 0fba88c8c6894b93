"""Captures as they lie on disk or come down a pipe: files, directories of rotated captures, growing files.

:func:`iter_packets` hands out the packets of one or more captures in batches (one per chunk read),
in capture order, optionally following a file as it grows or a directory as ``tcpdump -G``/``-C``
writes new files into it. A capture that is not one, or turns corrupt, is warned about, counted in
``stats["capture_errors"]`` and left; a capture that ends inside a record (still being written)
counts in ``stats["truncated_captures"]``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .packets import PacketStats
from .pcap import CaptureError, CaptureParser, Packet

log = logging.getLogger("solarbridge.capture")

Sources = str | os.PathLike[str] | BinaryIO | Iterable[str | os.PathLike[str]]

_NUM = re.compile(r"(\d+)")


def _natural(p: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in _NUM.split(p.name)]


def capture_files(directory: Path) -> list[Path]:
    """Capture files of a directory in capture order: natural name order (``x.pcap2`` < ``x.pcap10``)."""
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=_natural)


def newest_file(directory: Path) -> Path | None:
    best: tuple[float, list[object]] | None = None
    found: Path | None = None
    for p in capture_files(directory):
        try:
            key = (p.stat().st_mtime, _natural(p))
        except OSError:
            continue
        if best is None or key > best:
            best, found = key, p
    return found


def iter_packets(sources: Sources, *, follow: bool = False, poll_interval: float = 1.0,
                 should_stop: Callable[[], bool] | None = None, stats: PacketStats | None = None,
                 chunk_size: int = 1 << 20) -> Iterator[list[Packet]]:
    """Batches of ``(timestamp, linktype, frame)`` from captures.

    ``sources``: a capture file, a directory (all its captures in natural name order), ``"-"`` or a
    binary file object (read to its end, e.g. ``tcpdump -w -``), or a list of these. ``follow``: a
    file is followed as it grows; a directory follows its newest file and moves on when a newer one
    appears; both stop when ``should_stop()``.
    """
    st = stats if stats is not None else PacketStats()
    stop = should_stop or (lambda: False)
    if isinstance(sources, str | os.PathLike) or hasattr(sources, "read"):
        items: list[str | os.PathLike[str] | BinaryIO] = [sources]  # type: ignore[list-item]
    else:
        items = list(sources)  # type: ignore[arg-type]
    for item in items:
        if hasattr(item, "read"):
            yield from _one_file(item, "<stream>", st, chunk_size)  # type: ignore[arg-type]
            continue
        if str(item) == "-":
            yield from _one_file(sys.stdin.buffer, "<stdin>", st, chunk_size)
            continue
        path = Path(item)  # type: ignore[arg-type]
        if path.is_dir():
            if follow:
                yield from _follow_dir(path, st, poll_interval, stop, chunk_size)
            else:
                for f in capture_files(path):
                    yield from _path(f, st, chunk_size)
        elif follow:
            yield from _follow_file(path, st, poll_interval, stop, chunk_size, None)
        else:
            yield from _path(path, st, chunk_size)


def _pump(fileobj: BinaryIO, parser: CaptureParser, st: PacketStats, name: str,
          chunk_size: int) -> Iterator[list[Packet]]:
    # read1: a pipe (tcpdump -w -) hands over what it has instead of blocking for a full chunk
    read = getattr(fileobj, "read1", fileobj.read)
    while True:
        data = read(chunk_size)
        if not data:
            return
        try:
            packets = parser.feed(data)
        except CaptureError as exc:
            st.count("capture_errors")
            log.warning("%s: %s", name, exc)
            return
        if packets:
            yield packets


def _end_of_file(parser: CaptureParser, st: PacketStats, name: str) -> None:
    if parser.leftover and not parser.failed:
        st.count("truncated_captures")
        log.warning("%s: capture ends inside a record (%d bytes left over)", name, parser.leftover)


def _one_file(fileobj: BinaryIO, name: str, st: PacketStats, chunk_size: int) -> Iterator[list[Packet]]:
    parser = CaptureParser()
    yield from _pump(fileobj, parser, st, name, chunk_size)
    _end_of_file(parser, st, name)


def _path(path: Path, st: PacketStats, chunk_size: int) -> Iterator[list[Packet]]:
    log.info("reading %s", path)
    try:
        f = path.open("rb")
    except OSError as exc:
        st.count("capture_errors")
        log.warning("%s: %s", path, exc.strerror or exc)
        return
    with f:
        yield from _one_file(f, str(path), st, chunk_size)


def _follow_file(path: Path, st: PacketStats, poll: float, stop: Callable[[], bool], chunk_size: int,
                 newer: Callable[[], Path | None] | None) -> Iterator[list[Packet]]:
    """Read ``path`` as it grows; return when stopped or when ``newer()`` names another file."""
    log.info("following %s", path)
    parser = CaptureParser()
    with path.open("rb") as f:
        while True:
            yield from _pump(f, parser, st, str(path), chunk_size)
            if stop():
                return
            if newer is not None and newer() is not None:
                # the writer moved on: read what was appended meanwhile, then switch
                yield from _pump(f, parser, st, str(path), chunk_size)
                _end_of_file(parser, st, str(path))
                return
            if parser.failed and newer is None:
                return
            time.sleep(poll)


def _follow_dir(directory: Path, st: PacketStats, poll: float, stop: Callable[[], bool],
                chunk_size: int) -> Iterator[list[Packet]]:
    current: Path | None = None
    while not stop():
        current = newest_file(directory) if current is None else current
        if current is None:
            time.sleep(poll)
            continue
        this = current

        def newer(this: Path = this) -> Path | None:
            latest = newest_file(directory)
            return latest if latest is not None and latest != this else None

        yield from _follow_file(this, st, poll, stop, chunk_size, newer)
        current = newer()
        if current is not None:
            log.info("newer capture %s: switching to it", current)
