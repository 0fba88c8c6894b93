"""BPF filters compiled by libpcap (through ctypes), for the kernel socket filter and for capture files.

Only libpcap's compiler and its offline matcher are used (``pcap_open_dead`` + ``pcap_compile`` +
``pcap_offline_filter``); no capture handle is ever opened through libpcap, so nothing here can send.
The filter is always ``(tcp) and (<user filter>)``, as in the original tool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from functools import lru_cache

DLT_EN10MB = 1
SNAPLEN = 262144
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class FilterError(ValueError):
    """The BPF filter does not compile; the message is libpcap's own text."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap")
    for candidate in filter(None, (name, "libpcap.so.1", "libpcap.so.0.8", "libpcap.so")):
        try:
            lib = ctypes.CDLL(candidate)
            break
        except OSError:
            continue
    else:
        raise FilterError("libpcap is not installed (Debian: apt install libpcap0.8); it compiles BPF filters")
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    lib.pcap_offline_filter.restype = ctypes.c_int
    lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_Program), ctypes.POINTER(_PktHdr), ctypes.c_char_p]
    return lib


def expression(user_filter: str | None) -> str:
    """The effective filter: always TCP, narrowed by the user's filter."""
    return f"(tcp) and ({user_filter})" if user_filter and user_filter.strip() else "tcp"


class Filter:
    """A compiled filter for Ethernet frames."""

    def __init__(self, user_filter: str | None) -> None:
        self.expression = expression(user_filter)
        lib = _lib()
        self._lib = lib
        self._prog = _Program()
        dead = lib.pcap_open_dead(DLT_EN10MB, SNAPLEN)
        if not dead:
            raise FilterError("libpcap could not create a filter compiler")
        try:
            if lib.pcap_compile(dead, ctypes.byref(self._prog), self.expression.encode(), 1,
                                PCAP_NETMASK_UNKNOWN) != 0:
                err = (lib.pcap_geterr(dead) or b"cannot compile").decode(errors="replace")
                raise FilterError(f"bad filter {user_filter!r}: {err}")
        finally:
            lib.pcap_close(dead)
        self._hdr = _PktHdr()
        self._hdr_ref = ctypes.byref(self._hdr)
        self._prog_ref = ctypes.byref(self._prog)

    def __del__(self) -> None:
        prog = getattr(self, "_prog", None)
        if prog is not None and prog.bf_insns:
            self._lib.pcap_freecode(ctypes.byref(prog))
            prog.bf_insns = None

    def instructions(self) -> list[tuple[int, int, int, int]]:
        return [(i.code, i.jt, i.jf, i.k) for i in self._prog.bf_insns[: self._prog.bf_len]]

    def socket_filter(self) -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
        """``struct sock_fprog`` for SO_ATTACH_FILTER, and the instruction buffer it points at (keep it alive)."""
        insns = b"".join(struct.pack("HBBI", *i) for i in self.instructions())
        buf = ctypes.create_string_buffer(insns, len(insns))
        fprog = _SockFprog(self._prog.bf_len, ctypes.addressof(buf))
        return bytes(fprog), buf

    def match(self, frame: bytes) -> bool:
        """Does a captured Ethernet frame pass the filter (for capture files)."""
        n = len(frame)
        self._hdr.caplen = n
        self._hdr.len = n
        return self._lib.pcap_offline_filter(self._prog_ref, self._hdr_ref, frame) != 0
