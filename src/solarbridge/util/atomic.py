"""Atomic file replacement: a reader sees the old file or the new one, never a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None,
                 fsync: bool = True) -> None:
    """Write ``data`` to a temp file in the same directory, fsync it, then rename over ``path``.

    ``mode`` defaults to the existing file's permission bits (or 0o644 for a new file),
    so replacing a file never widens who can read it.
    """
    p = Path(path)
    if isinstance(data, str):
        data = data.encode()
    if mode is None:
        try:
            mode = p.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(p.parent)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable (best effort: some filesystems refuse O_RDONLY dir fsync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_private(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Atomically write a secrets file readable by its owner only (0600)."""
    atomic_write(path, data, mode=0o600)
