"""CRC-16 with the reflected 0x8005 polynomial (0xA001), no final xor: one table for every protocol.

SolarEdge frames start it at 0x5A5A (:mod:`solarbridge.sources.solaredge.crc`), Modbus (GivEnergy) at
0xFFFF. Long inputs fold two bytes per step with a 64 Ki-entry table (built on first use), which halves
the Python-level loop; :func:`make_crc16` uses the ``crcmod`` C extension instead when it is installed.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable

Buffer = bytes | bytearray | memoryview


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE: list[int] = _byte_table()
_WORD_TABLE: list[int] | None = None


def _word_table() -> list[int]:
    # Folding two bytes: after bytes b0,b1 the CRC depends only on x = crc ^ (b0 | b1 << 8).
    global _WORD_TABLE
    if _WORD_TABLE is None:
        t = TABLE
        _WORD_TABLE = [t[(t[x & 0xFF] ^ (x >> 8)) & 0xFF] ^ (t[x & 0xFF] >> 8) for x in range(65536)]
    return _WORD_TABLE


def crc16_py(data: Buffer, crc: int) -> int:
    """CRC of ``data`` starting from ``crc`` (pure Python)."""
    n = len(data)
    if n < 64:
        t = TABLE
        for b in bytes(data):
            crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc
    w = _word_table()
    even = n & ~1
    words = array("H")
    words.frombytes(bytes(data[:even]))
    if sys.byteorder == "big":
        words.byteswap()
    for x in words:
        crc = w[crc ^ x]
    if n & 1:
        crc = TABLE[(crc ^ data[n - 1]) & 0xFF] ^ (crc >> 8)
    return crc


#: (crcmod's C routine for reflected 16-bit CRCs, TABLE in its layout), None without crcmod, False before the check
_C_ROUTINE: tuple[Callable[[Buffer, int, bytes], int], bytes] | None | bool = False


def _c_routine() -> tuple[Callable[[Buffer, int, bytes], int], bytes] | None:
    # The routine with our table, rather than crcmod.mkCrcFun: that builds the same table in Python on every call.
    global _C_ROUTINE
    if _C_ROUTINE is False:
        try:
            from crcmod._crcfunext import _crc16r  # type: ignore[import-untyped]  # only the C version is worth it
        except ImportError:
            _C_ROUTINE = None
        else:
            _C_ROUTINE = (_crc16r, array("H", TABLE).tobytes())  # native unsigned shorts, as crcmod packs it
    return _C_ROUTINE  # type: ignore[return-value]


def accelerated() -> bool:
    """True when the crcmod C extension is there to do the work."""
    return _c_routine() is not None


def make_crc16(init: int, *, accelerate: bool = True) -> Callable[..., int]:
    """``crc16(data, crc=init)`` for one protocol's initial value (crcmod's C code when available).

    ``accelerate=False`` keeps the pure-Python code, which takes any bytes-like object.
    """
    c = _c_routine() if accelerate else None
    if c is not None:
        fun, table = c

        def crc16_c(data: Buffer, crc: int = init) -> int:
            return fun(data, crc, table)

        return crc16_c

    def crc16(data: Buffer, crc: int = init) -> int:
        return crc16_py(data, crc)

    return crc16


def c_function(init: int) -> tuple[Callable[[Buffer, int, bytes], int], bytes] | None:
    """``(fun, table)`` with ``fun(data, crc, table)`` the crcmod C routine itself, or None without crcmod.

    For a hot loop: one C call per CRC instead of a Python wrapper around it. (The table is the same for
    every initial value.)
    """
    return _c_routine()
