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
    BATTERY_FIELDS,
    BATTERY_TABLE,
    HOLDING_TABLE,
    HR,
    INPUT_TABLE,
    SINGLE_PHASE_LIVE,
    Field,
    ModelInfo,
    decode,
    decode_field,
    identify,
)
from .tables import (
    BCU_TABLE,
    BMU_TABLE,
    EMS_HOLDING_TABLE,
    EMS_INPUT_TABLE,
    GATEWAY_INPUT_TABLE,
    METER_TABLE,
    SLOTS_EMS,
    SLOTS_EMS_EXPORT,
    SLOTS_EXTENDED,
    SLOTS_SINGLE_PHASE,
    SLOTS_THREE_PHASE,
    THREE_PHASE_HOLDING_TABLE,
    THREE_PHASE_INPUT_TABLE,
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
#: external meters answer at device addresses 1..8 (IR 60-88)
METER_ADDRESSES = range(1, 9)
#: the meter block the poll reads: IR 60-89, as givenergy-modbus and every capture read it
METER_BLOCK: tuple[int, int] = (60, 30)
#: device type code prefixes with the 1000-range (three-phase) register layout: three-phase hybrid and
#: AC, AIO commercial and AIO hybrid (givenergy-modbus manifest ``is_three_phase``)
THREE_PHASE_PREFIXES = frozenset({"40", "41", "60", "82"})

#: register values that show up in the "garbage" blocks some dongles return (IP bytes,
#: ASCII of the adapter serial); a block with more than GARBAGE_THRESHOLD of them is dropped
GARBAGE_VALUES = frozenset({0x4C32, 0xC0A8, 0x0A0A, 0x2E31, 0x3139, 0x3231, 0x3136, 0x3830})
GARBAGE_THRESHOLD = 5


def is_garbage_block(values: tuple[int, ...]) -> bool:
    return sum(1 for v in values if v in GARBAGE_VALUES) > GARBAGE_THRESHOLD


def battery_present(regs: dict[int, int]) -> bool:
    """An empty LV battery slot answers with an all-zero block, or stray cell values without a serial
    or cell count (seen at 0x34 in the hybrid capture); a real pack has a serial or a cell count and sum."""
    sn = BATTERY_FIELDS["serial_number"]
    if any(regs.get(sn.register + i, 0) for i in range(sn.width)):
        return True
    return bool(regs.get(BATTERY_FIELDS["v_cells_sum"].register, 0) and regs.get(BATTERY_FIELDS["num_cells"].register, 0))


def meter_present(regs: dict[int, int]) -> bool:
    """A meter is wired at an address when its phase-1 voltage (IR 60) is not zero: empty addresses answer
    all-zero blocks on the AIO, gateway, three-phase and EMS captures (givenergy-modbus ``Meter.is_valid``)."""
    return bool(regs.get(METER_BLOCK[0], 0))


def hv_present(regs: dict[int, int]) -> bool:
    """An HV BCU/BMU is there when its first block (IR 60-119) is not all zero."""
    return any(regs.get(r, 0) for r in range(BATTERY_BLOCK, BATTERY_BLOCK + 60))


@dataclass
class Plant:
    """Raw registers of one inverter (+ LV batteries), filled from read replies."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    batteries: dict[int, dict[int, int]] = field(default_factory=dict)  # index 0.. -> IR 60-119
    hv: dict[int, dict[int, int]] = field(default_factory=dict)  # HV BCU/BMU device address -> raw IR
    meters: dict[int, dict[int, int]] = field(default_factory=dict)  # meter device address 1..8 -> raw IR
    adapter_serial: str = ""
    envelope_serial: str = ""  # inverter serial from the reply envelope
    #: device addresses whose IR/HR replies describe this inverter
    inverter_addresses: frozenset[int] = frozenset({0x11, 0x31, 0x32})
    version: int = 0  # bumped on each change, for caches
    _memo: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)

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
        elif dev in METER_ADDRESSES and resp.function == FC_READ_INPUT:
            bank = self.meters.setdefault(dev, {})
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

    def _fingerprint(self) -> tuple[int, ...]:
        # replies bump ``version``; code that writes the banks directly must bump it too
        return (self.version, len(self.input), len(self.holding), len(self.hv), len(self.meters), len(self.batteries),
                sum(len(r) for r in self.hv.values()))

    def _cached(self, name: str, compute: Any) -> Any:
        """``compute()``, remembered until the registers change (one reading asks for a view many times)."""
        key = self._fingerprint()
        hit = self._memo.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        self._memo[name] = (key, value)
        return value

    @property
    def three_phase(self) -> bool:
        """The model keeps its live data and controls in the 1000-range banks (IR 1000-1413, HR 1000-1124)."""
        return f"{self.holding.get(HR['device_type_code'], 0):04x}"[:2] in THREE_PHASE_PREFIXES

    @property
    def has_single_phase_live(self) -> bool:
        """Some of the single-phase live registers (IR 0-59) were read."""
        return any(r in self.input for r in SINGLE_PHASE_LIVE)

    def holding_values(self) -> dict[str, Any]:
        return decode(HOLDING_TABLE, self.holding)

    def input_values(self) -> dict[str, Any]:
        return decode(INPUT_TABLE, self.input)

    def values(self) -> dict[str, Any]:
        return self._cached('values', self._values)  # type: ignore[no-any-return]

    def _values(self) -> dict[str, Any]:
        """The inverter's decoded fields, by the layout of its model: single-phase IR 0-59/180-183 and
        HR 0-359, overlaid on three-phase models by the IR 1000-1413 and HR 1000-1124 fields (same names
        where the meaning is the same, e.g. ``battery_soc``, ``charge_target_soc``, the slots)."""
        out = decode(INPUT_TABLE, self.input)
        out.update(decode(HOLDING_TABLE, self.holding))
        if self.three_phase:
            for name in ("p_battery", "e_battery_throughput", "battery_type"):
                out.pop(name, None)  # single-phase registers these models leave frozen or reuse
            out.update(decode(THREE_PHASE_INPUT_TABLE, self.input))
            out.update(decode(THREE_PHASE_HOLDING_TABLE, self.holding))
            if "p_battery_discharge" in out and "p_battery_charge" in out:
                out["p_battery"] = round(out["p_battery_discharge"] - out["p_battery_charge"], 1)
            if "e_battery_charge_total" in out and "e_battery_discharge_total" in out:
                out["e_battery_throughput"] = round(out["e_battery_charge_total"] + out["e_battery_discharge_total"], 1)
        return out

    def slots(self) -> dict[str, list[tuple[int, int]]]:
        """Register pairs of the charge / discharge slots this model has (2, 10, or EMS 3, with 3 export slots)."""
        key = self.model.key
        if key == "ems":
            charge, discharge = SLOTS_EMS
            return {"charge": list(charge), "discharge": list(discharge), "export": list(SLOTS_EMS_EXPORT)}
        if self.three_phase:
            charge, discharge = SLOTS_THREE_PHASE
        elif any(r in self.holding for pair in SLOTS_EXTENDED[0][2:] for r in pair):
            charge, discharge = SLOTS_EXTENDED
        else:
            charge, discharge = SLOTS_SINGLE_PHASE
        return {"charge": list(charge), "discharge": list(discharge)}

    def battery_values(self) -> list[dict[str, Any]]:
        return self._cached('battery_values', self._battery_values)  # type: ignore[no-any-return]

    def _battery_values(self) -> list[dict[str, Any]]:
        """Decoded present LV batteries, in address order."""
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
        return self._cached('hv_modules', self._hv_modules)  # type: ignore[no-any-return]

    def _hv_modules(self) -> dict[str, list[int]]:
        """Present HV units by kind: {"bcu": [0x70, ...], "bmu": [0x50, ...]} (device addresses)."""
        out: dict[str, list[int]] = {"bcu": [], "bmu": []}
        for addr in sorted(self.hv):
            if hv_present(self.hv[addr]):
                out["bcu" if addr >= FIRST_BCU_ADDRESS else "bmu"].append(addr)
        return out

    def bcu_values(self) -> list[dict[str, Any]]:
        return self._cached('bcu_values', self._bcu_values)  # type: ignore[no-any-return]

    def _bcu_values(self) -> list[dict[str, Any]]:
        """Each present HV BCU (stack controller), decoded, with its ``address`` and ``index``."""
        out = []
        for n, addr in enumerate(self.hv_modules()["bcu"]):
            d = decode(BCU_TABLE, self.hv[addr])
            d["index"], d["address"] = n, addr
            out.append(d)
        return out

    def bmu_values(self) -> list[dict[str, Any]]:
        return self._cached('bmu_values', self._bmu_values)  # type: ignore[no-any-return]

    def _bmu_values(self) -> list[dict[str, Any]]:
        """Each present HV battery module, decoded (24 cell voltages and temperatures, serial)."""
        out = []
        for n, addr in enumerate(self.hv_modules()["bmu"]):
            regs = self.hv[addr]
            d = decode(BMU_TABLE, regs)
            cells = [d[f"v_cell_{i:02d}"] for i in range(1, 25) if f"v_cell_{i:02d}" in d]
            live = [v for v in cells if v > 0]
            if live:
                d["v_cells_sum"] = round(sum(live), 3)
                d["v_cell_min"], d["v_cell_max"] = min(live), max(live)
                d["num_cells"] = len(live)
            temps = [d[f"t_cell_{i:02d}"] for i in range(1, 25) if d.get(f"t_cell_{i:02d}")]
            if temps:
                d["t_max"], d["t_min"] = max(temps), min(temps)
            d["index"], d["address"] = n, addr
            out.append(d)
        return out

    def ems_values(self) -> dict[str, Any]:
        return self._cached('ems_values', self._ems_values)  # type: ignore[no-any-return]

    def _ems_values(self) -> dict[str, Any]:
        """EMS plant summary (IR 2040-2094) and controls (HR 2040-2075); empty on other models."""
        if self.model.key != "ems":
            return {}
        out = decode(EMS_INPUT_TABLE, self.input)
        out.update(decode(EMS_HOLDING_TABLE, self.holding))
        return out

    def gateway_values(self) -> dict[str, Any]:
        return self._cached('gateway_values', self._gateway_values)  # type: ignore[no-any-return]

    def _gateway_values(self) -> dict[str, Any]:
        """Gateway aggregates and per-AIO figures (IR 1600-1859); empty on other models."""
        if self.model.key != "gateway":
            return {}
        return decode(GATEWAY_INPUT_TABLE, self.input)

    def meter_values(self) -> dict[int, dict[str, Any]]:
        return self._cached('meter_values', self._meter_values)  # type: ignore[no-any-return]

    def _meter_values(self) -> dict[int, dict[str, Any]]:
        """External meters that answered (device address -> decoded IR 60-88); a zero voltage = absent."""
        out = {}
        for addr in sorted(self.meters):
            if not meter_present(self.meters[addr]):
                continue
            d = decode(METER_TABLE, self.meters[addr])
            # single-phase meters leave the total (IR 71) at 0: their power is the phases' sum
            phases = [d[f"p_active_phase_{n}"] for n in (1, 2, 3) if f"p_active_phase_{n}" in d]
            if "p_active_total" in d or phases:
                d["p_active"] = d.get("p_active_total") or sum(phases)
            out[addr] = d
        return out

    @property
    def serial(self) -> str:
        hr = self.holding
        field = Field("serial_number", HR["serial_number"], "str")
        if all(r in hr for r in range(field.register, field.register + field.width)):
            s = decode_field(field, hr)
            if s and s.isprintable():
                return s
        return self.envelope_serial

    @property
    def identity(self) -> tuple[int, int]:
        """(device type code, ARM firmware): what tells the model family apart (see registers.identify)."""
        return self.holding.get(HR["device_type_code"], 0), self.holding.get(HR["arm_firmware_version"], 0)

    @property
    def model(self) -> ModelInfo:
        return identify(*self.identity)

    @property
    def battery_nominal_v(self) -> float:
        return NOMINAL_BATTERY_V.get(self.model.key, 51.2)

    @property
    def battery_capacity_kwh(self) -> float:
        """Nominal capacity: HR55 (Ah) x the family's nominal voltage; on HV stacks the BCUs' own
        nominal Ah x their pack voltage when they answer."""
        bcus = [b for b in self.bcu_values() if b.get("battery_nominal_capacity_ah") and b.get("battery_voltage")]
        if bcus:
            return round(sum(b["battery_nominal_capacity_ah"] * b["battery_voltage"] for b in bcus) / 1000, 2)
        return round(self.holding.get(HR["battery_capacity_ah"], 0) * self.battery_nominal_v / 1000, 2)

    def firmware(self) -> str:
        """``D0.<DSP>-A0.<ARM>`` (HR19/HR21; three-phase models: IR1325/IR1327)."""
        v = self.values() if self.three_phase else {}
        if v.get("ac_dsp_firmware_version") and v.get("tph_arm_firmware_version"):
            return f"D0.{v['ac_dsp_firmware_version']}-A0.{v['tph_arm_firmware_version']}"
        hr = self.holding
        return f"D0.{hr.get(HR['dsp_firmware_version'], 0)}-A0.{hr.get(HR['arm_firmware_version'], 0)}"
