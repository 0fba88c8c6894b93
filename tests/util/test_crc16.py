"""The shared CRC-16 table: the published CRC-16/MODBUS check value, and C and Python code agreeing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.util.crc16 import crc16_py, make_crc16


def test_modbus_check_value_from_the_crc_catalogue() -> None:
    # reveng's catalogue: CRC-16/MODBUS, check = 0x4B37 for "123456789"
    assert make_crc16(0xFFFF, accelerate=False)(b"123456789") == 0x4B37
    assert make_crc16(0xFFFF)(b"123456789") == 0x4B37


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_every_implementation_agrees(data: bytes, init: int) -> None:
    want = crc16_py(data, init)
    assert make_crc16(init)(data) == make_crc16(init, accelerate=False)(bytearray(data)) == want
    # one call or two: the CRC can be continued
    assert crc16_py(data[7:], crc16_py(data[:7], init)) == want


@given(st.binary(max_size=300), st.sampled_from([0xFFFF, 0x5A5A, 0]))
def test_the_c_routine_with_our_table_equals_crcmods_own_crc(data: bytes, init: int) -> None:
    """crcmod's C routine runs with our table: crcmod's own function (its own table) is the oracle."""
    crcmod = pytest.importorskip("crcmod")
    assert make_crc16(init)(data) == crcmod.mkCrcFun(0x18005, initCrc=init, rev=True, xorOut=0)(data)
