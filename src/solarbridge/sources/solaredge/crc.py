"""The protocol's CRC-16: poly 0x8005 reflected (0xA001), init 0x5A5A, no final xor.

The frame CRC covers seq/from/to/function packed big-endian plus the payload (see ``framing``).
The table and the code are :mod:`solarbridge.util.crc16`, shared with Modbus (GivEnergy).
"""

from __future__ import annotations

from ...util.crc16 import accelerated, make_crc16
from ...util.crc16 import crc16_py as _crc16_py

INIT = 0x5A5A

#: CRC of ``data`` starting from ``crc`` (C implementation when available)
crc16 = make_crc16(INIT)
ACCELERATED = accelerated()


def crc16_py(data: bytes | bytearray | memoryview, crc: int = INIT) -> int:
    """CRC of ``data`` starting from ``crc`` (pure Python)."""
    return _crc16_py(data, crc)
