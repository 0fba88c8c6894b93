"""Blocking byte streams for semonitor: file/stdin (optionally followed), serial port, TCP server.

Each stream has ``read(timeout) -> bytes | None`` (``b""`` when nothing arrived in time, ``None`` at
end of stream), ``write(data)``, ``close()`` and ``name``.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import sys
import time
from collections.abc import Callable

TYPE_CHECKING = False  # (not typing's: semonitor starts without importing typing)
if TYPE_CHECKING:  # socket only for network mode: reading a file starts faster without it
    import socket
    from typing import BinaryIO

CHUNK = 1 << 16
DEFAULT_PORTS = (22222, 22221, 80)
SOCKET_TIMEOUT = 120.0
FOLLOW_POLL = 0.1


class FileStream:
    """A data file or stdin; with ``follow`` the end of file is waited out (``tail -f``)."""

    def __init__(self, path: str, follow: bool = False) -> None:
        self.follow = follow
        if path in ("-", "stdin"):
            self.name = "stdin"
            self._f: BinaryIO = sys.stdin.buffer
            self._fd: int | None = sys.stdin.fileno()
            self._own = False
        else:
            self.name = path
            self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
            self._fd = None
            self._own = True

    def read(self, timeout: float = 1.0) -> bytes | None:
        if self._fd is not None:
            r, _, _ = select.select([self._fd], [], [], timeout)
            if not r:
                return b""
            data = os.read(self._fd, CHUNK)
        else:
            data = self._f.read(CHUNK)
        if data:
            return data
        if not self.follow:
            return None
        time.sleep(min(FOLLOW_POLL, timeout))
        return b""

    def write(self, data: bytes) -> None:
        raise OSError(f"{self.name} is read-only (commands need a serial device or network mode)")

    def close(self) -> None:
        if self._own:
            self._f.close()


class SerialStream:
    """A serial port (pyserial; 8N1, no flow control, like the original)."""

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        import serial  # lazy: only serial users pay for it

        self.name = port
        self._s = serial.Serial(port, baudrate=baudrate, timeout=0)

    def read(self, timeout: float = 1.0) -> bytes | None:
        r, _, _ = select.select([self._s.fileno()], [], [], timeout)
        if not r:
            return b""
        try:
            data = self._s.read(max(1, self._s.in_waiting))
        except (OSError, ValueError):  # pyserial's SerialException is an OSError
            return None
        # readable but nothing to read: the device went away (unplugged adapter, closed pty)
        return data or None

    def write(self, data: bytes) -> None:
        self._s.write(data)
        self._s.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._s.close()


class SocketStream:
    def __init__(self, sock: socket.socket, name: str) -> None:
        self._s = sock
        self.name = name
        self._last = time.monotonic()

    def read(self, timeout: float = 1.0) -> bytes | None:
        r, _, _ = select.select([self._s], [], [], timeout)
        if not r:
            if time.monotonic() - self._last > SOCKET_TIMEOUT:
                return None  # a silent peer for 120 s is a lost connection
            return b""
        try:
            data = self._s.recv(CHUNK)
        except OSError:
            return None
        self._last = time.monotonic()
        return data or None

    def write(self, data: bytes) -> None:
        self._s.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._s.close()


def listen(ports: list[int] | tuple[int, ...], host: str = "") -> list[socket.socket]:
    import socket

    out = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            s.close()
            for o in out:
                o.close()
            raise OSError(e.errno, f"cannot listen on port {port}: {e.strerror}") from None
        s.listen(1)
        out.append(s)
    return out


def accept(listeners: list[socket.socket], stop: Callable[[], bool] = lambda: False) -> SocketStream | None:
    import socket

    """Wait for the first inverter connection on any listener (None if ``stop()`` turns true)."""
    while not stop():
        r, _, _ = select.select(listeners, [], [], 0.5)
        if r:
            conn, addr = r[0].accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return SocketStream(conn, f"{addr[0]}:{addr[1]}")
    return None


def is_serial_device(path: str) -> bool:
    """A data source is a serial port when it is a character device (ttyS, ttyUSB, pts, ...).

    The original asked pyserial's port list, which misses ptys; any tty character device counts here.
    """
    if path in ("-", "stdin"):
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return True
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


