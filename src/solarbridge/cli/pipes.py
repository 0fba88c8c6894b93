"""Standard output closed by the reader (``solarbridge history | head``): stop quietly, exit 0.

Python raises BrokenPipeError at the next write, and again when the interpreter flushes stdout at exit
("Exception ignored ... BrokenPipeError"). Pointing file descriptor 1 at /dev/null silences the second.
"""

from __future__ import annotations

import contextlib
import os
import sys


def reader_went_away() -> int:
    """Call from an ``except BrokenPipeError`` around a command's output; returns the exit code (0)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0
