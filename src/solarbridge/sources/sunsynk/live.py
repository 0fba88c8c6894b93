"""Live capture: a receive-only Linux AF_PACKET socket with the BPF filter attached in the kernel.

Why AF_PACKET + a libpcap-compiled filter rather than a libpcap capture handle (pcapy-ng):
- no compiled Python extension to build or keep in step with libpcap; only libpcap's filter compiler is
  used, through ctypes, so the filter language and its error messages are exactly libpcap's;
- the socket is an ordinary non-blocking file descriptor in the asyncio loop (``loop.add_reader``), so
  there is no capture thread and no polling timeout; every packet is delivered as soon as it arrives
  (what libpcap calls immediate mode);
- the filter runs in the kernel before a packet is queued to the socket, so unrelated traffic costs the
  process nothing: it is never copied to user space or seen by Python;
- nothing in this module can transmit: it never calls send/sendto/write on the socket, and the socket is
  bound with protocol ETH_P_ALL only after the filter is attached (no unfiltered packet slips in).

Like the original, only Ethernet link types are accepted (``lo`` included, which Linux frames as Ethernet);
``any`` (Linux cooked capture) is refused with a clear message.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from .bpf import Filter, FilterError

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
_SYS_NET = Path("/sys/class/net")


class CaptureError(Exception):
    """Live capture cannot start; one plain line for the user."""


def _devices() -> list[str]:
    try:
        return sorted(p.name for p in _SYS_NET.iterdir())
    except OSError:
        return []


def check_device(device: str) -> int:
    """The device's ARPHRD link type, or CaptureError when it cannot be captured with Ethernet framing."""
    if device == "any":
        raise CaptureError("device 'any' is not supported: it captures Linux cooked frames, not Ethernet; "
                           "name one interface (e.g. br0 or eth0)")
    if "/" in device or not device or not (_SYS_NET / device).exists():
        names = ", ".join(_devices()) or "none found"
        raise CaptureError(f"no such network device {device!r} (available: {names}); "
                           "for a capture file set file = true")
    try:
        arphrd = int((_SYS_NET / device / "type").read_text().strip())
    except (OSError, ValueError):
        arphrd = ARPHRD_ETHER
    if arphrd not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        raise CaptureError(f"device {device!r} has link type {arphrd}, not Ethernet; capture on the Ethernet "
                           "or bridge interface the dongle's traffic crosses")
    return arphrd


class LiveCapture:
    """A receive-only capture socket on one interface. Use :meth:`read_batch` when :meth:`fileno` is readable."""

    def __init__(self, device: str, user_filter: str | None = None, *, rcvbuf: int = 4 << 20) -> None:
        arphrd = check_device(device)
        try:
            self.filter = Filter(user_filter)
        except FilterError as e:
            raise CaptureError(str(e)) from None
        self.device = device
        self.loopback = arphrd == ARPHRD_LOOPBACK
        try:
            # protocol 0: the socket receives nothing until bind(), i.e. until the filter is in place
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureError(f"capturing on {device!r} needs root or the CAP_NET_RAW capability "
                               "(run as root, or: sudo setcap cap_net_raw+ep <python binary>)") from None
        try:
            fprog, self._insns = self.filter.socket_filter()
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if self.loopback:
                # lo shows each packet twice (sent, received): let the kernel drop the sent copy (Linux >= 4.20)
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    pass  # older kernels: read_batch skips the copy instead
            sock.bind((device, ETH_P_ALL))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise CaptureError(f"cannot capture on {device!r}: {e.strerror or e}") from None
        self.sock = sock
        # one receive buffer for every packet (lo's MTU is 64 KiB; offloads can pass larger frames, truncated)
        self._buf = bytearray(262144)
        self._view = memoryview(self._buf)
        self.packets = 0
        self.kernel_drops = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_batch(self, limit: int = 512) -> list[tuple[float, bytes]]:
        """Frames waiting in the socket (up to ``limit``), each with its receive time; never blocks."""
        out: list[tuple[float, bytes]] = []
        recv = self.sock.recvfrom_into
        buf, view = self._buf, self._view
        loopback = self.loopback
        now = time.time()
        for _ in range(limit):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            # on loopback every packet is seen twice (sent and received); keep the received copy, like libpcap
            if loopback and addr[2] == PACKET_OUTGOING:
                continue
            out.append((now, bytes(view[:n])))
        self.packets += len(out)
        return out

    def kernel_stats(self) -> tuple[int, int]:
        """(packets, drops) counted by the kernel since the last call, added to the running totals."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", raw)
        self.kernel_drops += drops
        return _packets, drops

    def close(self) -> None:
        self.sock.close()


def can_capture() -> bool:
    """True when this process may open packet sockets (root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        return True
    except PermissionError:
        return False
    except OSError:
        return os.geteuid() == 0
