"""The register cache of one GivEnergy plant and the decoded views over it.

A :class:`Plant` holds raw register values exactly as read (holding, input, and
one IR 60-119 block per LV battery). Every output (canonical readings, GivTCP
JSON, the simulator's seed) is computed from it, so a reply that arrives
unsolicited (fan-out from another client) refreshes the cache as well as one
we asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .framing import FC_READ_HOLDING, FC_READ_INPUT, ReadResponse
from .registers import (
    BATTERY_BLOCK,
    BATTERY_TABLE,
    HOLDING_TABLE,
    INPUT_TABLE,
    Field,
    ModelInfo,
    decode,
    decode_field,
    identify,
)

FIRST_BATTERY_ADDRESS = 0x32
MAX_BATTERIES = 6
#: HV battery stacks (AIO, 3-phase, Hybrid HV Gen3): BCUs at 0x70+n, BMU modules at 0x50+m
FIRST_BCU_ADDRESS = 0x70
MAX_BCUS = 8
FIRST_BMU_ADDRESS = 0x50
MAX_BMUS = 8
HV_ADDRESSES = frozenset(range(FIRST_BCU_ADDRESS, FIRST_BCU_ADDRESS + MAX_BCUS)) | frozenset(
    range(FIRST_BMU_ADDRESS, FIRST_BMU_ADDRESS + MAX_BMUS))
NOMINAL_BATTERY_V = {"3ph": 76.8, "aio": 317.0}

#: register values that show up in the "garbage" blocks some dongles return (IP bytes,
#: ASCII of the adapter serial); a block with more than GARBAGE_THRESHOLD of them is dropped
GARBAGE_VALUES = frozenset({0x4C32, 0xC0A8, 0x0A0A, 0x2E31, 0x3139, 0x3231, 0x3136, 0x3830})
GARBAGE_THRESHOLD = 5


def is_garbage_block(values: tuple[int, ...]) -> bool:
    return sum(1 for v in values if v in GARBAGE_VALUES) > GARBAGE_THRESHOLD


def battery_present(regs: dict[int, int]) -> bool:
    """An empty LV battery slot answers with an all-zero block, or stray cell values without a serial
    or cell count (seen at 0x34 in the hybrid capture); a real pack has a serial or a cell count and sum."""
    if any(regs.get(r, 0) for r in range(110, 115)):
        return True
    return bool(regs.get(80, 0) and regs.get(97, 0))


def hv_present(regs: dict[int, int]) -> bool:
    """An HV BCU/BMU is there when its IR 60-119 block is not all zero (the fact sheet gives no layout)."""
    return any(regs.get(r, 0) for r in range(60, 120))


@dataclass
class Plant:
    """Raw registers of one inverter (+ LV batteries), filled from read replies."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    batteries: dict[int, dict[int, int]] = field(default_factory=dict)  # index 0.. -> IR 60-119
    hv: dict[int, dict[int, int]] = field(default_factory=dict)  # HV BCU/BMU device address -> raw IR
    adapter_serial: str = ""
    envelope_serial: str = ""  # inverter serial from the reply envelope
    #: device addresses whose IR/HR replies describe this inverter
    inverter_addresses: frozenset[int] = frozenset({0x11, 0x31, 0x32})
    version: int = 0  # bumped on each change, for caches

    def apply(self, resp: ReadResponse) -> bool:
        """Store a read reply's registers; False if it is not for this plant or is garbage."""
        if resp.function not in (FC_READ_HOLDING, FC_READ_INPUT) or is_garbage_block(resp.values):
            return False
        dev = resp.device
        if resp.function == FC_READ_INPUT and resp.base == BATTERY_BLOCK and \
                FIRST_BATTERY_ADDRESS <= dev < FIRST_BATTERY_ADDRESS + MAX_BATTERIES:
            bank = self.batteries.setdefault(dev - FIRST_BATTERY_ADDRESS, {})
        elif dev in self.inverter_addresses:
            bank = self.holding if resp.function == FC_READ_HOLDING else self.input
        elif dev in HV_ADDRESSES and resp.function == FC_READ_INPUT:
            bank = self.hv.setdefault(dev, {})
        else:
            return False
        for i, v in enumerate(resp.values):
            bank[resp.base + i] = v
        if resp.adapter_serial:
            self.adapter_serial = resp.adapter_serial
        if resp.inverter_serial and dev in self.inverter_addresses:
            self.envelope_serial = resp.inverter_serial
        self.version += 1
        return True

    # ------------------------------------------------------------------ decoded views

    def holding_values(self) -> dict[str, Any]:
        return decode(HOLDING_TABLE, self.holding)

    def input_values(self) -> dict[str, Any]:
        return decode(INPUT_TABLE, self.input)

    def battery_values(self) -> list[dict[str, Any]]:
        """Decoded present batteries, in address order."""
        out = []
        for idx in sorted(self.batteries):
            regs = self.batteries[idx]
            if battery_present(regs):
                d = decode(BATTERY_TABLE, regs)
                d["index"] = idx
                d["address"] = FIRST_BATTERY_ADDRESS + idx
                out.append(d)
        return out

    def hv_modules(self) -> dict[str, list[int]]:
        """Present HV units by kind: {"bcu": [0x70, ...], "bmu": [0x50, ...]} (device addresses)."""
        out: dict[str, list[int]] = {"bcu": [], "bmu": []}
        for addr in sorted(self.hv):
            if hv_present(self.hv[addr]):
                out["bcu" if addr >= FIRST_BCU_ADDRESS else "bmu"].append(addr)
        return out

    @property
    def serial(self) -> str:
        hr = self.holding
        if all(r in hr for r in range(13, 18)):
            s = decode_field(Field("inverter_serial_number", 13, "str"), hr)
            if s and s.isprintable():
                return s
        return self.envelope_serial

    @property
    def model(self) -> ModelInfo:
        return identify(self.holding.get(0, 0), self.holding.get(21, 0))

    @property
    def battery_nominal_v(self) -> float:
        return NOMINAL_BATTERY_V.get(self.model.key, 51.2)

    @property
    def battery_capacity_kwh(self) -> float:
        return round(self.holding.get(55, 0) * self.battery_nominal_v / 1000, 2)

    def firmware(self) -> str:
        return f"D0.{self.holding.get(19, 0)}-A0.{self.holding.get(21, 0)}"

    def has_basic_data(self) -> bool:
        return all(r in self.input for r in range(60)) and all(r in self.holding for r in range(60))
