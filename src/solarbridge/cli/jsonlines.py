"""Reading JSON lines for the converter commands: a file or stdin, optionally followed like ``tail -f``.

Shared by se2state, se2csv, se2graphite and pickle2graphite. Every line gets a number; a line
that is not a JSON object is reported as ``name:line: reason`` on stderr and skipped, or stops
the command with ``-x``. A progress bar (rich) is shown when a regular file is read to its end
and stderr is a terminal. Nothing here prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

#: a line longer than this is reported and skipped (guards memory against a newline-less stream)
MAX_LINE = 16 * 1024 * 1024
CHUNK = 256 * 1024


class InputError(Exception):
    """A problem to report in one line; ``exit_code`` is what the command returns."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(object, "") for a JSON object line, (None, reason) otherwise; semonitor's NaN is accepted."""
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError:
        try:
            obj = json.loads(raw.decode("latin-1"))
        except ValueError as e:
            return None, _reason(e)
        except RecursionError:
            return None, "nested too deeply"
    except ValueError as e:
        return None, _reason(e)
    except RecursionError:
        return None, "nested too deeply"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (got {type(obj).__name__})"
    return obj, ""


def _reason(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at column {e.colno}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class JsonLines:
    """Iterate ``(line_number, object)`` over a JSON-lines input.

    ``source`` is a path or ``"-"`` for stdin. With ``follow`` the reader waits for more data at
    the end of a regular file (polling every ``poll`` seconds, reopening the file if it was
    replaced or truncated, as ``tail -F``); a pipe is read until its writer closes it.
    ``on_idle`` is called each time the reader has caught up and is about to wait.
    """

    def __init__(self, source: str = "-", *, follow: bool = False, poll: float = 0.2, strict: bool = False,
                 progress: bool | None = None, prog: str = "", on_idle: Callable[[], None] | None = None,
                 stderr: TextIO | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source = source
        self.name = "<stdin>" if source == "-" else source
        self.follow = follow
        self.poll = poll
        self.strict = strict
        self.progress = progress
        self.prog = prog
        self.on_idle = on_idle
        self.stderr = stderr if stderr is not None else sys.stderr
        self.sleep = sleep
        self.lines = 0
        self.bad = 0
        self._progress: Any = None
        self._fd = -1
        self._task: Any = None

    # ------------------------------------------------------------------ messages
    def warn(self, message: str) -> None:
        text = f"{self.prog}: {message}" if self.prog else message
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stderr, flush=True)

    def _bad(self, lineno: int, reason: str) -> None:
        self.bad += 1
        where = f"{self.name}:{lineno}"
        if self.strict:
            raise InputError(f"{where}: malformed JSON line ({reason}); stopped (-x)", exit_code=1)
        self.warn(f"{where}: skipped malformed JSON line: {reason}")

    # ------------------------------------------------------------------ reading
    def _open(self) -> int:
        if self.source == "-":
            return sys.stdin.fileno()
        try:
            return os.open(self.source, os.O_RDONLY)
        except OSError as e:
            raise InputError(f"cannot read {self.source}: {e.strerror}", exit_code=2) from None

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        self._fd = self._open()
        try:
            yield from self._lines(self._fd)
        finally:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            if self.source != "-":
                try:
                    os.close(self._fd)
                except OSError:
                    pass

    def _start_progress(self, fd: int) -> None:
        st = os.fstat(fd)
        want = self.progress
        if want is None:
            want = (not self.follow and self.source != "-" and stat.S_ISREG(st.st_mode)
                    and hasattr(self.stderr, "isatty") and self.stderr.isatty())
        if not want or not stat.S_ISREG(st.st_mode):
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TimeRemainingColumn(), console=Console(file=self.stderr), transient=True)
        self._task = self._progress.add_task(os.path.basename(self.name), total=st.st_size)
        self._progress.start()

    def _lines(self, fd: int) -> Iterator[tuple[int, dict[str, Any]]]:
        self._start_progress(fd)
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        buf = b""
        lineno = 0
        skipping = False  # inside an over-long line, until its newline
        pos = 0
        while True:
            if not regular and self.on_idle is not None:
                ready, _, _ = select.select([fd], [], [], 0)
                if not ready:
                    self.on_idle()
            chunk = os.read(fd, CHUNK)
            if chunk:
                pos += len(chunk)
                if self._progress is not None:
                    self._progress.update(self._task, completed=pos)
                parts = (buf + chunk).split(b"\n")
                buf = parts.pop()
                for raw in parts:
                    lineno += 1
                    if skipping:
                        skipping = False
                        continue
                    obj = self._one(lineno, raw)
                    if obj is not None:
                        yield lineno, obj
                if len(buf) > MAX_LINE and not skipping:
                    # the line is counted (and its tail dropped) when its newline arrives
                    self.lines += 1
                    self._bad(lineno + 1, f"line longer than {MAX_LINE} bytes")
                    skipping = True
                if skipping:
                    buf = b""
                continue
            # end of the data available now
            if not (self.follow and regular):
                if buf.strip() and not skipping:
                    lineno += 1
                    obj = self._one(lineno, buf)
                    if obj is not None:
                        yield lineno, obj
                return
            if self.on_idle is not None:
                self.on_idle()
            self.sleep(self.poll)
            if self.source != "-":
                fd, pos, reset = self._check_replaced(fd, pos)
                self._fd = fd
                if reset:
                    buf, lineno, skipping = b"", 0, False

    def _check_replaced(self, fd: int, pos: int) -> tuple[int, int, bool]:
        """Reopen a followed file that was replaced (new inode) or truncated, like ``tail -F``."""
        try:
            st = os.stat(self.source)
        except OSError:
            return fd, pos, False
        cur = os.fstat(fd)
        if (st.st_ino, st.st_dev) != (cur.st_ino, cur.st_dev):
            # drain what is left of the old file first
            if os.lseek(fd, 0, os.SEEK_CUR) < cur.st_size:
                return fd, pos, False
            try:
                new = os.open(self.source, os.O_RDONLY)
            except OSError:
                return fd, pos, False
            os.close(fd)
            self.warn(f"{self.name}: file replaced; reading the new one from the start")
            return new, 0, True
        if cur.st_size < os.lseek(fd, 0, os.SEEK_CUR):
            os.lseek(fd, 0, os.SEEK_SET)
            self.warn(f"{self.name}: file truncated; reading from the start")
            return fd, 0, True
        return fd, pos, False

    def _one(self, lineno: int, raw: bytes) -> dict[str, Any] | None:
        if not raw.strip():
            return None
        self.lines += 1
        obj, reason = parse_line(raw)
        if obj is None:
            self._bad(lineno, reason)
        return obj


# ----------------------------------------------------------------------------- command helpers


def add_input_arguments(parser: argparse.ArgumentParser, *, follow_default: bool = False) -> None:
    """The input options every converter shares."""
    parser.add_argument("infile", nargs="?", default="-",
                        help="semonitor JSON lines to read (default: stdin, also '-')")
    if not follow_default:
        parser.add_argument("-f", "--follow", action="store_true",
                            help="at the end of the input file, wait for more lines (like tail -f)")
    parser.add_argument("-x", "--strict", action="store_true",
                        help="stop with exit code 1 at the first malformed line (default: report it "
                             "with its line number on stderr and skip it)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown only when reading a file on a terminal)")


def add_help_argument(parser: argparse.ArgumentParser) -> None:
    """``--help`` only: the original tools use -h for an option (host, header)."""
    parser.add_argument("--help", action="help", help="show this help and exit")


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a command body: one-line errors, exit 130 on Ctrl-C, never a traceback for input problems."""
    try:
        return body()
    except InputError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): quiet exit 0, as the reader asked for no more
        from .pipes import reader_went_away

        return reader_went_away()
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}:{where} {e.strerror or e}", file=sys.stderr)
        return 1
