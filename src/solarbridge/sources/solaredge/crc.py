"""The protocol's CRC-16: poly 0x8005 reflected (0xA001), init 0x5A5A, no final xor.

The frame CRC covers seq/from/to/function packed big-endian plus the payload (see ``framing``).
When the ``crcmod`` package (C extension) is installed it does the work; otherwise two bytes are
folded per step with a 64 Ki-entry table (built on first use of a long input), which halves the
Python-level loop. Both give the same result (tested).
"""

from __future__ import annotations

import sys
from array import array

INIT = 0x5A5A


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


def crc16_py(data: bytes | bytearray | memoryview, crc: int = INIT) -> int:
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


def _fast() -> object | None:
    try:
        import crcmod  # type: ignore[import-untyped]
        import crcmod._crcfunext  # type: ignore[import-untyped]  # noqa: F401 - only the C version is worth it
    except ImportError:
        return None
    return crcmod.mkCrcFun(0x18005, initCrc=INIT, rev=True, xorOut=0)


_crcmod = _fast()
#: CRC of ``data`` starting from ``crc`` (C implementation when available)
crc16 = _crcmod if _crcmod is not None else crc16_py  # type: ignore[assignment]
ACCELERATED = _crcmod is not None
