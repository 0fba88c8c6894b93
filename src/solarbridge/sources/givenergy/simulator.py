"""A GivEnergy WiFi/LAN dongle + inverter that speaks the real protocol on a real TCP socket.

``solarbridge simulate givenergy [--port 8899] [--batteries N] [--model hybrid|gen2|ac|aio|hvgen3|3ph|ems|gateway]``

* per model, the blocks that model has (``SIM_BLOCKS``, as its real capture answers them); a block it
  lacks gets an exception reply or, with ``--unsupported timeout``, no reply at all (the request times out);
* HV models (aio, hvgen3, 3ph): a BCU at 0x70 and ``--batteries`` BMU modules at 0x50.. (24 cells each)
  instead of LV packs, their cell voltages following the SOC;
* three-phase (3ph): IR 1000-1413 and HR 1000-1124 from the same physics, split over three phases
  (per-phase inverter and meter powers that sum to the totals), control from its own HR bank
  (target HR1111, reserve HR1109, slots HR1113-1121), a three-phase grid meter at address 1;
* EMS (ems): two managed inverters with their own SOC (IR 2040-2094), EMS controls HR 2040-2075, a
  grid meter at 1 and a generation meter at 3; gateway: two AIOs (IR 1600-1859) with their own SOC;

* register banks per device address: the inverter answers at 0x11/0x31/0x32, LV batteries
  at 0x32+n (IR 60-119), empty battery slots return all-zero blocks;
* heartbeats to every client, and a client that misses three is dropped (as the dongle does);
* the write whitelist and ranges of the real client library, with error replies (fc|0x80);
* a physics model (PV, load, battery SOC, grid) that obeys the control registers
  (charge target, reserve, slots, eco/export mode, enable flags) and keeps energy counters;
* realism switches seen in the captures: reply delay, fan-out of replies to all clients,
  unsolicited frames, null frames, corrupt CRCs, split TCP segments, garbage blocks;
* ``--replay FILE`` seeds the registers from a captured session (and ``--replay-stream``
  plays its received frames to clients as unsolicited traffic).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ...util.ports import tcp_port
from .controls import TIME_REGISTERS, WRITE_RANGES, WRITE_SAFE
from .framing import (
    FC_READ_HOLDING,
    FC_READ_INPUT,
    MAX_REGISTERS,
    Framer,
    Heartbeat,
    ReadRequest,
    ReadResponse,
    WriteRequest,
    encode_error_response,
    encode_heartbeat,
    encode_null_response,
    encode_read_response,
    encode_write_response,
    parse_capture_line,
)
from .model import battery_present
from .registers import SIM_MODELS
from .tables import SLOTS_EMS, SLOTS_EXTENDED, SLOTS_SINGLE_PHASE, SLOTS_THREE_PHASE

INVERTER_ADDRESSES = (0x11, 0x31, 0x32)
BATTERY_BASE_ADDRESS = 0x32
BANK_SIZE = 2200  # registers 0..2199 (gateway IR 1600-1899, EMS 2040-2075)
BCU_ADDRESS, BMU_BASE_ADDRESS = 0x70, 0x50
HV_SLOTS = 8  # 0x70-0x77, 0x50-0x57: absent slots answer all-zero blocks
HV_MODELS = frozenset({"aio", "hvgen3", "3ph"})
METER_ADDRESSES = range(1, 9)
CELLS_PER_MODULE = 24


def _ranges(*spans: tuple[int, int]) -> frozenset[int]:
    return frozenset(r for a, b in spans for r in range(a, b + 1))


#: the registers each simulated model answers (model -> (input, holding)); anything else is
#: "not supported": an exception reply or no reply at all (the request times out), as real units do
SIM_BLOCKS: dict[str, tuple[frozenset[int], frozenset[int]]] = {
    # Gen1 hybrid (ARM 449): answers IR 240-299 (seen in the hybrid_2_bat_a capture at 0x31) but not
    # the extended holding blocks HR 180-359 (fact sheet 1.7: gen2/gen3/AC extended)
    "hybrid": (_ranges((0, 299)), _ranges((0, 179))),
    "ac": (_ranges((0, 239)), _ranges((0, 359))),
    "aio": (_ranges((0, 299)), _ranges((0, 359))),
    # Gen2 (ARM 920): IR 0-59 and 120-239, HR 0-179 at 0x11 (hybrid_gen2_1_bat_a)
    "gen2": (_ranges((0, 59), (120, 239)), _ranges((0, 179))),
    # Hybrid HV Gen3: the single-phase banks plus IR 1000-1413 and HR 240-299, 1060-1124 (hybrid_hv_gen3_a)
    "hvgen3": (_ranges((0, 59), (180, 239), (1000, 1413)), _ranges((0, 299), (1060, 1124))),
    # GIV-3HY-11: IR 1000-1413 and HR 1000-1124 hold its data (three_phase_hv_a; the capture read HR 1120 with
    # 5 registers, so whether HR 1125+ answer is unknown: the simulator answers up to HR 1179)
    "3ph": (_ranges((0, 299), (1000, 1413)), _ranges((0, 299), (1000, 1179))),
    "ems": (_ranges((0, 59), (180, 239), (2040, 2099)), _ranges((0, 179), (2040, 2075))),
    "gateway": (_ranges((0, 59), (120, 239), (1600, 1959)), _ranges((0, 359))),
}
#: external meters per model (device addresses), as its capture shows them: a grid meter at 1 on the Gen2
#: and HV Gen3 hybrids; the three-phase hybrid and the gateway a second meter at 2, the EMS a generation
#: meter at 3. Every other address 1..8 answers an all-zero block (as the AIO, gateway, three-phase and EMS
#: captures show), except on the Gen1 hybrid, which answers no meter address at all (hybrid_2_bat_a)
SIM_METERS: dict[str, tuple[int, ...]] = {"gen2": (1,), "hvgen3": (1,), "3ph": (1, 2), "ems": (1, 3),
                                         "gateway": (1, 2)}
#: device type per model family for the physics: which registers carry live data and controls
FAMILY = {"3ph": "3ph", "ems": "ems", "gateway": "gateway"}
#: EMS managed inverters / gateway AIOs simulated, and each one's share of the plant's battery
UNITS = 2
AH_PER_BATTERY = 160  # Giv-Bat 8.2
HV_MODULE_AH = 52  # the GIV-3HY-11's HV modules (three_phase_hv_a)


def _ascii_regs(text: str) -> list[int]:
    b = text.encode("ascii")[:10].ljust(10, b"\x00")
    return [(b[i] << 8) | b[i + 1] for i in range(0, 10, 2)]


def _u16(v: float) -> int:
    return int(round(v)) & 0xFFFF


def _in_slot(now_hhmm: int, start: int, end: int) -> bool:
    if start == end or start % 100 > 59 or end % 100 > 59 or start > 2359 or end > 2359:
        return False
    if start < end:
        return start <= now_hhmm < end
    return now_hhmm >= start or now_hhmm < end  # over midnight


@dataclass
class WriteRecord:
    device: int
    register: int
    value: int
    accepted: bool
    at: float = field(default_factory=time.time)


class SimInverter:
    """Register banks and the physics behind them. Pure state; the server drives it."""

    def __init__(self, model: str = "hybrid", batteries: int = 2, serial: str = "SA2114G000",
                 seed: int = 0, start: datetime | None = None, speed: float = 1.0,
                 unsupported: str = "refuse") -> None:
        if unsupported not in ("timeout", "refuse"):
            raise ValueError("unsupported must be 'timeout' or 'refuse'")
        if model not in SIM_MODELS:
            raise ValueError(f"model must be one of {', '.join(SIM_MODELS)}")
        if not 0 <= batteries <= 6:
            raise ValueError("batteries must be 0..6")
        self.model = model
        self.family = FAMILY.get(model, "single")
        self.serial = serial
        self.meter_banks: dict[int, dict[int, int]] = {addr: {} for addr in SIM_METERS.get(model, ())}
        #: empty meter addresses answer all-zero blocks (False: no reply at all, as the Gen1 hybrid)
        self.empty_meters_answer = model != "hybrid"
        self._meter_dt = 0.0
        self.replaying = False  # seeded from a capture: registers answer as captured
        #: SOC of each EMS managed inverter / gateway AIO (the plant SOC is their mean)
        self.unit_soc = [62.0, 48.0] if self.family in ("ems", "gateway") else []
        #: HV models (aio, 3ph): ``batteries`` counts BMU modules at 0x50+m behind one BCU at 0x70
        self.hv_modules = batteries if model in HV_MODELS else 0
        self.batteries = batteries if model not in HV_MODELS else 0
        self.hv_banks: dict[int, dict[int, int]] = {}
        self.supported_input, self.supported_holding = SIM_BLOCKS[model]
        self.unsupported = unsupported
        self._seen: dict[int, set[int]] = {FC_READ_INPUT: set(), FC_READ_HOLDING: set()}
        self.rng = random.Random(seed)
        self.holding = [0] * BANK_SIZE
        self.input = [0] * BANK_SIZE
        self.battery_banks = [[0] * 120 for _ in range(6)]
        self.write_log: list[WriteRecord] = []
        self._clock_writes: dict[int, int] = {}
        self.speed = speed
        self._t0_real = time.monotonic()
        self._t0_sim = start or datetime.now().replace(microsecond=0)
        self.soc = 60.0
        self.energy_wh: dict[str, float] = {}
        self.last_tick: float | None = None
        self.cloud = 1.0
        self.batt_w = 0.0
        self._seed_registers()
        self.tick(0.0)

    # ------------------------------------------------------------------ set-up

    def _seed_registers(self) -> None:
        hr = self.holding
        code, fw = SIM_MODELS[self.model]
        hr[0], hr[19], hr[21], hr[18] = code, fw, fw, 3007
        hr[2], hr[3] = 0x0001, 0x0201
        hr[8:13] = _ascii_regs("BG2134G000" if self.batteries else "")
        hr[13:18] = _ascii_regs(self.serial)
        hr[34], hr[47], hr[54] = 140, 1, 1
        hr[55] = AH_PER_BATTERY * max(self.batteries, self.hv_modules, 1)
        hr[20], hr[27], hr[59], hr[96] = 0, 1, 0, 1
        hr[94], hr[95] = 30, 430
        hr[110], hr[111], hr[112], hr[114], hr[116] = 4, 50, 50, 4, 100
        hr[97], hr[98] = 4800, 5800
        if self.model == "3ph":
            # the three-phase control bank (HR 1078, 1108-1123): target 100 %, reserve 4 %, full AC rates,
            # AC charge on, charge slot 1 00:30-04:30, no force flags
            hr[1078], hr[1109], hr[1111] = 4, 4, 100
            hr[1108], hr[1110], hr[1112] = 100, 100, 1
            hr[1113], hr[1114] = 30, 430
        e = self.energy_wh
        e.update(pv_total=21146300.0, grid_out_total=5249100.0, grid_in_total=2865730.0,
                 inverter_out_total=2721010.0, inverter_in_total=908890.0, throughput_total=2962850.0,
                 charge_total=184300.0, discharge_total=157110.0, load_total=3812400.0)
        for k in ("pv1_day", "pv2_day", "grid_out_day", "grid_in_day", "inverter_in_day", "charge_day",
                  "discharge_day", "inverter_out_day", "load_day"):
            e[k] = 0.0
        self._day = self.now().date()
        for n in range(self.batteries):
            bank = self.battery_banks[n]
            bank[96], bank[97], bank[98] = 100 + 10 * n, 16, 3007
            bank[86 + 1] = AH_PER_BATTERY * 100
            bank[110:115] = _ascii_regs(f"BG2134G{n:03d}")
        if self.hv_modules:
            self._seed_hv()
        if self.family == "3ph":
            self._seed_three_phase()
        elif self.family == "ems":
            self._seed_ems()
        elif self.family == "gateway":
            self._seed_gateway()

    def _seed_hv(self) -> None:
        """One BCU at 0x70 (cluster layout of tables.BCU_TABLE) and the BMU modules at 0x50+m."""
        bcu = self.hv_banks.setdefault(BCU_ADDRESS, {})
        m = self.hv_modules
        bcu.update({60: 0x4241, 61: 0x4241, 62: 0x0000, 63: 0x0009,  # "BABA0009"
                    64: m, 65: CELLS_PER_MODULE, 67: CELLS_PER_MODULE * m, 68: 12 * m, 81: 95,
                    98: HV_MODULE_AH * 10, 100: 483, 102: int(m * CELLS_PER_MODULE * 2.65 * 10),
                    103: int(m * CELLS_PER_MODULE * 3.63 * 10), 104: 250, 105: 250})
        for i, v in enumerate(_ascii_regs(f"HB{self.serial[2:7]}000")):
            bcu[138 + i] = v
        for k in range(m):
            bmu = self.hv_banks.setdefault(BMU_BASE_ADDRESS + k, {})
            for i, v in enumerate(_ascii_regs(f"HY{self.serial[2:7]}{k:03d}")):
                bmu[114 + i] = v

    def _seed_three_phase(self) -> None:
        """The rest of a GIV-3HY's HR 1000-1124 (its control bank is seeded above): system enable, active
        rate, lithium battery type, EPS (backup) on, export limit; its firmware and battery type in IR."""
        hr = self.holding
        hr[1000], hr[1002], hr[1080], hr[1105] = 1, 100, 1, 1
        hr[1102], hr[1103] = 11000, 1
        ir = self.input
        ir[1121], ir[1124], ir[1325], ir[1326], ir[1327] = 1, 1, 11043, 10311, 11121
        ir[1317:1320] = _ascii_regs("ZA1.0")[:3]

    def _seed_ems(self) -> None:
        """EMS controls (HR 2040-2075) and the managed inverters' serials (IR 2066+)."""
        hr = self.holding
        hr[2040], hr[2041], hr[2042] = 1, UNITS, 2
        for n in range(3):
            hr[2046 + 3 * n], hr[2055 + 3 * n], hr[2064 + 3 * n] = 4, 100, 4
        hr[2053], hr[2054] = 30, 430  # charge slot 1
        hr[2071] = 9500
        ir = self.input
        for n in range(UNITS):
            ir[2066 + 5 * n:2071 + 5 * n] = _ascii_regs(f"CE{self.serial[2:7]}{n:03d}")

    def _seed_gateway(self) -> None:
        self.holding[313], self.holding[314] = 50, 100  # its AC charge / discharge rates, as captured
        ir = self.input
        ir[1600:1604] = [0x4741, 0x4141, 0x0000, 0x0104]  # "GAAA0014"
        ir[1604], ir[1700], ir[1701], ir[1704] = 2, UNITS, UNITS, 620
        for n in range(UNITS):
            ir[1841 + 5 * n:1846 + 5 * n] = _ascii_regs(f"CH{self.serial[2:7]}{n:03d}")
        ir[1627:1632] = ir[1841:1846]
        e = self.energy_wh
        for n in range(UNITS):
            e[f"aio{n}_charge_total"], e[f"aio{n}_discharge_total"] = 980000.0 * (n + 1), 950000.0 * (n + 1)
            e[f"aio{n}_charge_day"], e[f"aio{n}_discharge_day"] = 0.0, 0.0

    def seed_from_capture(self, path: Path) -> int:
        """Load the register values a captured session received; returns frames applied."""
        framer = Framer()
        applied = 0
        self.batteries = 0
        self.hv_modules = 0
        self.hv_banks = {}
        self.meter_banks = {}
        self._seen = {FC_READ_INPUT: set(), FC_READ_HOLDING: set()}
        for line in path.read_text().splitlines():
            parsed = parse_capture_line(line)
            if parsed is None or parsed[0] != "rx":
                continue
            for fr in framer.feed(parsed[1]):
                if isinstance(fr, ReadResponse) and fr.function in (FC_READ_HOLDING, FC_READ_INPUT):
                    applied += self._apply_capture(fr)
        # answer the blocks the captured unit answered, plus the base blocks every model has
        if self._seen[FC_READ_INPUT] or self._seen[FC_READ_HOLDING]:
            self.supported_input = frozenset(self._seen[FC_READ_INPUT]) | _ranges((0, 59), (180, 239))
            self.supported_holding = frozenset(self._seen[FC_READ_HOLDING]) | _ranges((0, 179))
        self.hv_modules = sum(1 for a in self.hv_banks if BMU_BASE_ADDRESS <= a < BMU_BASE_ADDRESS + HV_SLOTS)
        # a unit whose capture answers any meter address answers the empty ones all-zero; one that answered
        # none (the Gen1 hybrid) answers none
        self.empty_meters_answer = bool(self.meter_banks)
        if self.holding[13:18] != [0] * 5:
            raw = b"".join(v.to_bytes(2, "big") for v in self.holding[13:18])
            self.serial = raw.decode("latin-1").strip("\x00")
        self.soc = float(self.input[59] or self.soc)
        # the registers stay as captured (the physics no longer writes them): the unit answers like its capture
        self.replaying = applied > 0
        return applied

    def _apply_capture(self, fr: ReadResponse) -> int:
        dev, base = fr.device, fr.base
        if fr.function == FC_READ_INPUT and base == 60 and BATTERY_BASE_ADDRESS <= dev < BATTERY_BASE_ADDRESS + 6:
            bank = self.battery_banks[dev - BATTERY_BASE_ADDRESS]
            if battery_present(dict(zip(range(base, base + len(fr.values)), fr.values, strict=True))):
                self.batteries = max(self.batteries, dev - BATTERY_BASE_ADDRESS + 1)
        elif dev in INVERTER_ADDRESSES:
            bank = self.holding if fr.function == FC_READ_HOLDING else self.input
            self._seen[fr.function].update(range(base, base + len(fr.values)))
        elif fr.function == FC_READ_INPUT and dev in METER_ADDRESSES:
            meter = self.meter_banks.setdefault(dev, {})
            meter.update(zip(range(base, base + len(fr.values)), fr.values, strict=True))
            return 1
        elif fr.function == FC_READ_INPUT and (BCU_ADDRESS <= dev < BCU_ADDRESS + HV_SLOTS or
                                               BMU_BASE_ADDRESS <= dev < BMU_BASE_ADDRESS + HV_SLOTS):
            hv = self.hv_banks.setdefault(dev, {})
            hv.update(zip(range(base, base + len(fr.values)), fr.values, strict=True))
            return 1
        else:
            return 0
        for i, v in enumerate(fr.values):
            if base + i < len(bank):
                bank[base + i] = v
        return 1

    # ------------------------------------------------------------------ clock and physics

    def now(self) -> datetime:
        return self._t0_sim + timedelta(seconds=(time.monotonic() - self._t0_real) * self.speed)

    def set_time(self, when: datetime) -> None:
        self._t0_sim = when
        self._t0_real = time.monotonic()

    @property
    def capacity_wh(self) -> float:
        if self.hv_modules:
            return self.hv_modules * CELLS_PER_MODULE * 3.2 * HV_MODULE_AH
        if self.unit_soc:
            return UNITS * 9500.0
        return self.holding[55] * 51.2

    def controls(self) -> dict[str, int | list[tuple[int, int]]]:
        """Register numbers of the controls the physics obeys, by family: three-phase models keep target,
        reserve and slots in HR 1000-1124, the EMS in HR 2040-2075, the rest in the single-phase bank."""
        if self.family == "ems":
            charge, discharge = SLOTS_EMS
            return {"target": 2055, "reserve": 2046, "target_enable": -1, "charge_enable": -1,
                    "discharge_enable": -1, "eco": -1, "cutoff": -1, "charge_slots": list(charge),
                    "discharge_slots": list(discharge)}
        charge_enable = 96
        if self.family == "3ph":
            charge, discharge = SLOTS_THREE_PHASE
            target, reserve, charge_enable = 1111, 1109, 1112  # AC charge enable
        else:
            charge, discharge = SLOTS_EXTENDED if 246 in self.supported_holding else SLOTS_SINGLE_PHASE
            target, reserve = 116, 110
        return {"target": target, "reserve": reserve, "target_enable": 20, "charge_enable": charge_enable,
                "discharge_enable": 59, "eco": 27, "cutoff": 114, "charge_slots": list(charge),
                "discharge_slots": list(discharge)}

    @property
    def max_battery_w(self) -> float:
        return {"hybrid": 2600.0, "3ph": 11000.0, "ems": 6000.0, "gateway": 12000.0, "aio": 6000.0}.get(
            self.model, 3000.0)

    def battery_power(self, pv: float, load: float, hhmm: int) -> float:
        """Battery power (+ discharge, - charge) the inverter would choose under the control registers."""
        hr = self.holding
        c = self.controls()

        def reg(name: str, default: int) -> int:
            r = c[name]
            return hr[r] if isinstance(r, int) and r >= 0 else default

        charge_max = hr[111] / 50 * self.max_battery_w if self.family == "single" else self.max_battery_w
        discharge_max = hr[112] / 50 * self.max_battery_w if self.family == "single" else self.max_battery_w
        if self.family in ("3ph", "gateway"):  # AC charge / discharge rates, % of the battery rate
            c_reg, d_reg = (1110, 1108) if self.family == "3ph" else (313, 314)
            charge_max = min(hr[c_reg], 100) / 100 * self.max_battery_w
            discharge_max = min(hr[d_reg], 100) / 100 * self.max_battery_w
        if 318 in self.supported_holding:  # the battery pause mode: 1 charge, 2 discharge, 3 both
            if hr[318] in (1, 3):
                charge_max = 0.0
            if hr[318] in (2, 3):
                discharge_max = 0.0
        target = reg("target", 100) if reg("target_enable", 1) or self.family != "single" else 100
        cutoff = reg("cutoff", 4)
        reserve = max(reg("reserve", 4), cutoff) if cutoff > 4 else reg("reserve", 4)
        soc = self.soc
        charging_slot = bool(reg("charge_enable", 1)) and any(
            _in_slot(hhmm, hr[a], hr[b]) for a, b in c["charge_slots"])  # type: ignore[union-attr]
        discharge_slot = bool(reg("discharge_enable", 1)) and any(
            _in_slot(hhmm, hr[a], hr[b]) for a, b in c["discharge_slots"])  # type: ignore[union-attr]
        surplus = pv - load
        if not self.batteries and not self.hv_modules and not self.unit_soc:
            return 0.0
        if charging_slot and soc < target:
            return -charge_max
        if discharge_slot and soc > reserve:
            if reg("eco", 1) == 0:
                return discharge_max
            return min(discharge_max, max(-surplus, 0.0))
        if surplus > 0:  # store solar surplus in every mode, up to 100 % (or the target in a slot)
            return -min(surplus, charge_max) if soc < (target if charging_slot else 100) else 0.0
        if reg("discharge_enable", 0) == 0 and reg("eco", 1) == 1 and soc > reserve:  # eco: cover the load
            return min(-surplus, discharge_max)
        return 0.0

    def tick(self, dt: float) -> None:
        """Advance the physics by ``dt`` simulated seconds and refresh the input registers."""
        if self.replaying:
            return
        self._meter_dt = dt
        now = self.now()
        if now.date() != self._day:
            self._day = now.date()
            for k in list(self.energy_wh):
                if k.endswith("_day"):
                    self.energy_wh[k] = 0.0
        hour = now.hour + now.minute / 60 + now.second / 3600
        hhmm = now.hour * 100 + now.minute
        rng = self.rng
        self.cloud = min(1.0, max(0.3, self.cloud + rng.uniform(-0.02, 0.02)))
        peak = {"ac": 0.0, "3ph": 9600.0, "gateway": 6000.0}.get(self.model, 4800.0)
        scale = 3.0 if self.family == "3ph" else 1.0
        pv = max(0.0, math.sin(math.pi * (hour - 6) / 12)) * peak * self.cloud if 6 <= hour <= 18 else 0.0
        load = (280 + 120 * rng.random() + (900 if 17 <= hour < 21 else 0)) * scale
        batt = self.battery_power(pv, load, hhmm)
        if dt > 0 and self.capacity_wh:
            if self.unit_soc:  # each unit carries its share; the plant SOC is their mean
                for i in range(len(self.unit_soc)):
                    d = batt / len(self.unit_soc) * dt / 3600 / (self.capacity_wh / len(self.unit_soc)) * 100
                    self.unit_soc[i] = min(100.0, max(0.0, self.unit_soc[i] - d))
                self.soc = sum(self.unit_soc) / len(self.unit_soc)
            else:
                self.soc -= batt * dt / 3600 / self.capacity_wh * 100
            if self.soc >= 100:
                self.soc = 100.0
            if self.soc <= 0:
                self.soc = 0.0
        self.batt_w = batt
        grid_import = load - pv - batt
        inverter_out = pv + batt
        e = self.energy_wh
        h = dt / 3600
        pv1, pv2 = pv * 0.52, pv * 0.48
        e["pv1_day"] += pv1 * h
        e["pv2_day"] += pv2 * h
        e["pv_total"] += pv * h
        if grid_import > 0:
            e["grid_in_day"] += grid_import * h
            e["grid_in_total"] += grid_import * h
        else:
            e["grid_out_day"] -= grid_import * h
            e["grid_out_total"] -= grid_import * h
        if inverter_out > 0:
            e["inverter_out_day"] += inverter_out * h
            e["inverter_out_total"] += inverter_out * h
        else:
            e["inverter_in_day"] -= inverter_out * h
            e["inverter_in_total"] -= inverter_out * h
        if batt > 0:
            e["discharge_day"] += batt * h
            e["discharge_total"] += batt * h
        else:
            e["charge_day"] -= batt * h
            e["charge_total"] -= batt * h
        e["throughput_total"] += abs(batt) * h
        e["load_day"] += load * h
        e["load_total"] += load * h
        for n in range(UNITS if self.family == "gateway" else 0):
            share = batt / UNITS * h
            e[f"aio{n}_discharge_day" if share > 0 else f"aio{n}_charge_day"] += abs(share)
            e[f"aio{n}_discharge_total" if share > 0 else f"aio{n}_charge_total"] += abs(share)
        self._write_inputs(pv1, pv2, grid_import, batt, load, inverter_out, now)
        if self.hv_modules:
            self._write_hv(batt)
        if self.family == "3ph":
            self._write_three_phase(pv1, pv2, grid_import, batt, load, inverter_out)
        elif self.family == "ems":
            self._write_ems(pv, grid_import, batt, load)
        elif self.family == "gateway":
            self._write_gateway(pv, grid_import, batt, load)
        if self.family in ("single", "gateway"):
            for addr, power in ((1, grid_import), (2, load)):
                if addr in self.meter_banks:
                    self._write_meter(addr, power)

    def _write_meter(self, addr: int, power: float) -> None:
        """A single-phase meter (IR 60-88) reading ``power`` W, + import (phase 1 only, total left 0, as the
        Gen2, HV Gen3 and gateway captures show), with import/export energy counters."""
        meter = self.meter_banks.setdefault(addr, {})
        volts = 2440 + self.rng.randint(-5, 5)
        meter[60], meter[63], meter[68] = volts, _u16(abs(power) / volts * 1000), _u16(power)
        meter[76], meter[84] = _u16(abs(power) / 10 * 10) if power else 0, 5000 + self.rng.randint(-3, 3)
        self._meter_energy(addr, power)

    def _meter_energy(self, addr: int, power: float) -> None:
        """A meter's import / export energy counters (IR 85 / 87, 0.1 kWh), following its power (+ import)."""
        meter = self.meter_banks.setdefault(addr, {})
        e = self.energy_wh
        key = f"meter{addr}"
        e.setdefault(f"{key}_in", 1234500.0 * addr)
        e.setdefault(f"{key}_out", 456700.0 * addr)
        e[f"{key}_in" if power > 0 else f"{key}_out"] += abs(power) * max(0.0, self._meter_dt) / 3600
        meter[85], meter[87] = min(int(e[f"{key}_in"] / 100), 0xFFFF), min(int(e[f"{key}_out"] / 100), 0xFFFF)

    # ------------------------------------------------------------------ family registers from the physics

    def _u32(self, bank: list[int] | dict[int, int], reg: int, value: float) -> None:
        v = max(0, int(round(value)))
        bank[reg], bank[reg + 1] = (v >> 16) & 0xFFFF, v & 0xFFFF

    def _write_hv(self, batt: float) -> None:
        """BCU cluster figures and each module's 24 cells (voltage follows the SOC, ~3.2-3.4 V)."""
        bcu = self.hv_banks[BCU_ADDRESS]
        m = self.hv_modules
        v_cell = 3.2 + 0.002 * self.soc
        v_pack = v_cell * CELLS_PER_MODULE * m
        current = batt / v_pack if v_pack else 0.0
        soc = int(round(self.soc))
        e = self.energy_wh
        bcu.update({70: 4 if batt > 1 else 3 if batt < -1 else 2, 73: _u16(v_pack * 10), 74: _u16(v_pack * 10 + 20),
                    76: _u16(-current * 10), 80: (min(soc + 1, 100) << 8) | soc, 99: _u16(HV_MODULE_AH * soc / 10)})
        self._u32(bcu, 82, e["charge_total"] / 100)
        self._u32(bcu, 84, e["discharge_total"] / 100)
        self._u32(bcu, 90, e["charge_day"] / 100)
        self._u32(bcu, 92, e["discharge_day"] / 100)
        for k in range(m):
            bmu = self.hv_banks[BMU_BASE_ADDRESS + k]
            for i in range(CELLS_PER_MODULE):
                bmu[60 + i] = int(v_cell * 1000) + (i + k) % 3
                bmu[90 + i] = 250 + (i % 5) + int(abs(current))

    def _write_three_phase(self, pv1: float, pv2: float, grid_import: float, batt: float, load: float,
                           inverter_out: float) -> None:
        """IR 1000-1413: the physics split over three phases; per-phase powers sum to the totals."""
        ir, e = self.input, self.energy_wh
        rng = self.rng
        weights = (0.36, 0.31, 0.33)
        ir[1001], ir[1002] = (6200 if pv1 else 0), (6000 if pv2 else 0)
        ir[1009], ir[1010] = _u16(pv1 / 62), _u16(pv2 / 60)
        self._u32(ir, 1017, pv1 * 10)
        self._u32(ir, 1019, pv2 * 10)
        for n, w in enumerate(weights):
            ir[1061 + n] = 4000 + rng.randint(-20, 20)
            ir[1064 + n] = _u16(abs(inverter_out) * w / 230 * 10)
            ir[1091 + n] = _u16(inverter_out * w)
            ir[1094 + n] = 2300 + rng.randint(-10, 10)
            ir[1181 + n] = ir[1094 + n]
        # meter per phase is + export; rounding goes to L3 so the three sum exactly to the total
        grid_out = -int(round(grid_import))
        l1, l2 = int(grid_out * weights[0]), int(grid_out * weights[1])
        ir[1083], ir[1084], ir[1085] = _u16(l1), _u16(l2), _u16(grid_out - l1 - l2)
        ir[1067] = 5000 + rng.randint(-5, 5)
        inv = int(round(inverter_out * 10))
        ir[1069], ir[1070] = (inv >> 16) & 0xFFFF, inv & 0xFFFF
        self._u32(ir, 1071, max(-inverter_out, 0) * 10)
        self._u32(ir, 1079, max(grid_import, 0) * 10)
        self._u32(ir, 1081, max(-grid_import, 0) * 10)
        self._u32(ir, 1089, load * 10)
        ir[1075], ir[1076] = 1, 1
        ir[1128], ir[1129], ir[1130] = 420, 400, 410
        v_pack = (3.2 + 0.002 * self.soc) * CELLS_PER_MODULE * max(self.hv_modules, 1)
        ir[1131], ir[1133] = _u16(v_pack * 10), _u16(v_pack * 10 + 4)
        ir[1132] = int(round(self.soc))
        self._u32(ir, 1136, max(batt, 0) * 10)
        self._u32(ir, 1138, max(-batt, 0) * 10)
        ir[1140] = _u16(batt / v_pack * 100)
        ir[1180] = 5000
        for reg, key in ((1360, "inverter_out_day"), (1362, "inverter_out_total"), (1366, "pv1_day"),
                         (1370, "pv2_day"), (1374, "pv_total"), (1376, "inverter_in_day"), (1378, "inverter_in_total"),
                         (1380, "grid_in_day"), (1382, "grid_in_total"), (1384, "grid_out_day"),
                         (1386, "grid_out_total"), (1388, "discharge_day"), (1390, "discharge_total"),
                         (1392, "charge_day"), (1394, "charge_total"), (1396, "load_day"), (1398, "load_total")):
            self._u32(ir, reg, e[key] / 100)
        self._u32(ir, 1412, (e["pv1_day"] + e["pv2_day"]) / 100)
        meter = self.meter_banks.setdefault(1, {})
        for n, w in enumerate(weights):
            meter[60 + n] = 2300 + rng.randint(-10, 10)
            meter[63 + n] = _u16(abs(grid_import) * w / 230 * 100)
            meter[68 + n] = _u16(-(ir[1083 + n] - 0x10000 if ir[1083 + n] & 0x8000 else ir[1083 + n]))
        meter[71] = _u16(grid_import)
        meter[83], meter[84] = 9990, 5000
        meter[85], meter[87] = min(int(e["grid_in_total"] / 100), 0xFFFF), min(int(e["grid_out_total"] / 100), 0xFFFF)
        # a sub-meter at 2 on L3 (the capture's meter 2 reads a small import there): a tenth of the load
        sub = self.meter_banks.setdefault(2, {})
        sub_w = load / 10
        for n in range(3):
            sub[60 + n] = meter[60 + n]
        sub[65], sub[67], sub[70], sub[71] = _u16(sub_w / 230 * 100), _u16(sub_w / 230 * 100), _u16(sub_w), _u16(sub_w)
        sub[82], sub[83], sub[84] = 9900, 9900, 5000
        sub[85] = min(int(e["load_total"] / 1000), 0xFFFF)

    def _write_ems(self, pv: float, grid_import: float, batt: float, load: float) -> None:
        """IR 2040-2094: the plant summary of two managed inverters; the grid meter (1), generation meter (3)."""
        ir = self.input
        ir[2040], ir[2041], ir[2042], ir[2043], ir[2044], ir[2045] = 1, 2, 16, 17, UNITS, 18
        ir[2046], ir[2048] = _u16(grid_import), _u16(pv)
        for n in range(UNITS):
            ir[2054 + n] = _u16(batt / UNITS)
            ir[2058 + n] = int(round(self.unit_soc[n]))
            ir[2062 + n] = 420 + 20 * n
        ir[2086], ir[2087], ir[2088] = _u16(load), 0, _u16(pv)
        ir[2089], ir[2090] = _u16(grid_import), _u16(batt)
        ir[2091] = _u16(self.soc / 100 * self.capacity_wh)
        for addr, power in ((1, grid_import), (3, pv)):
            meter = self.meter_banks.setdefault(addr, {})
            meter[60], meter[63] = 2410 + self.rng.randint(-5, 5), _u16(abs(power) / 241 * 100)
            meter[67], meter[68], meter[71] = meter[63], _u16(power), _u16(power)
            meter[83], meter[84] = 9990, 4995
            self._meter_energy(addr, power)

    def _write_gateway(self, pv: float, grid_import: float, batt: float, load: float) -> None:
        """IR 1600-1859 (V1 word order): aggregates and two AIOs; battery powers are + charging on the wire."""
        ir, e = self.input, self.energy_wh
        ir[1608], ir[1609] = 2410 + self.rng.randint(-5, 5), _u16(grid_import / 241 * 10)
        ir[1610], ir[1611], ir[1612] = 2415, _u16(load / 241 * 10), _u16(pv / 241 * 10)
        ir[1616], ir[1617], ir[1618], ir[1619] = _u16(-grid_import), _u16(pv), _u16(load), _u16(-batt)
        ir[1624], ir[1625] = ir[1608], ir[1608]
        for reg, key in ((1640, "grid_in"), (1643, "pv"), (1646, "grid_out"), (1655, "load")):
            ir[reg] = min(int(e.get(f"{key}_day", e.get(f"{key}1_day", 0.0)) / 100), 0xFFFF)
            self._u32(ir, reg + 1, e[f"{key}_total"] / 100)
        ir[1643] = min(int((e["pv1_day"] + e["pv2_day"]) / 100), 0xFFFF)
        ch_day = sum(e[f"aio{n}_charge_day"] for n in range(UNITS))
        dis_day = sum(e[f"aio{n}_discharge_day"] for n in range(UNITS))
        ch_tot = sum(e[f"aio{n}_charge_total"] for n in range(UNITS))
        dis_tot = sum(e[f"aio{n}_discharge_total"] for n in range(UNITS))
        for reg, day, total in ((1649, ch_day, ch_tot), (1652, dis_day, dis_tot), (1795, ch_day, ch_tot),
                                (1798, dis_day, dis_tot)):
            ir[reg] = min(int(day / 100), 0xFFFF)
            self._u32(ir, reg + 1, total / 100)
        ir[1702], ir[1703] = _u16(-batt), 0
        for n in range(UNITS):
            ir[1705 + 3 * n] = min(int(e[f"aio{n}_charge_day"] / 100), 0xFFFF)
            self._u32(ir, 1706 + 3 * n, e[f"aio{n}_charge_total"] / 100)
            ir[1750 + 3 * n] = min(int(e[f"aio{n}_discharge_day"] / 100), 0xFFFF)
            self._u32(ir, 1751 + 3 * n, e[f"aio{n}_discharge_total"] / 100)
            ir[1801 + n] = int(round(self.unit_soc[n]))
            ir[1816 + n] = _u16(-batt / UNITS)

    def _write_inputs(self, pv1: float, pv2: float, grid_import: float, batt: float, load: float,
                      inverter_out: float, now: datetime) -> None:
        ir, e = self.input, self.energy_wh

        def u32(reg: int, wh: float) -> None:
            v = int(wh / 100)  # deci-kWh
            ir[reg], ir[reg + 1] = (v >> 16) & 0xFFFF, v & 0xFFFF

        def deci(wh: float) -> int:
            return min(int(wh / 100), 0xFFFF)

        v_batt = 49.0 + self.soc * 0.05
        ir[0] = 1
        ir[1], ir[2] = (3700 if pv1 else 0), (3650 if pv2 else 0)
        ir[5], ir[13] = 2400 + self.rng.randint(-30, 30), 5000 + self.rng.randint(-8, 8)
        ir[8], ir[9] = _u16(pv1 / 37), _u16(pv2 / 36.5)
        ir[10] = _u16(abs(inverter_out) / 24)
        ir[17], ir[19] = deci(e["pv1_day"]), deci(e["pv2_day"])
        ir[18], ir[20] = _u16(pv1), _u16(pv2)
        u32(6, e["throughput_total"])
        u32(11, e["pv_total"])
        u32(21, e["grid_out_total"])
        u32(27, e["inverter_in_total"])
        u32(32, e["grid_in_total"])
        u32(45, e["inverter_out_total"])
        ir[24] = _u16(inverter_out)
        ir[25], ir[26] = deci(e["grid_out_day"]), deci(e["grid_in_day"])
        ir[30] = _u16(-grid_import)
        ir[35] = deci(e["inverter_in_day"])
        ir[36], ir[37] = deci(e["charge_day"]), deci(e["discharge_day"])
        ir[41] = _u16(380 + abs(inverter_out) / 100)
        ir[42] = _u16(load)
        ir[44] = deci(e["inverter_out_day"])
        ir[50], ir[51], ir[52] = _u16(v_batt * 100), _u16(batt / v_batt * 100), _u16(batt)
        ir[53], ir[54] = 2400, 5000
        ir[55], ir[56] = 300, 215
        ir[59] = int(round(self.soc))
        ir[180], ir[181] = deci(e["discharge_total"]), deci(e["charge_total"])
        ir[182], ir[183] = deci(e["discharge_day"]), deci(e["charge_day"])
        hr = self.holding
        hr[35], hr[36], hr[37] = now.year - 2000, now.month, now.day
        hr[38], hr[39], hr[40] = now.hour, now.minute, now.second
        for n in range(self.batteries):
            bank = self.battery_banks[n]
            cell = int(v_batt / 16 * 1000)
            for i in range(16):
                bank[60 + i] = cell + (i % 3)
            bank[76:80] = [230, 231, 229, 232]
            bank[80] = cell * 16
            bank[95] = _u16(batt / self.batteries / v_batt * 100)
            bank[100] = ir[59]
            bank[103], bank[104] = 235, 224

    # ------------------------------------------------------------------ protocol

    def read(self, device: int, function: int, base: int, count: int) -> tuple[int, ...] | None:
        """Register values for a read; None = exception reply; () = no reply (unknown device)."""
        if not 1 <= count <= MAX_REGISTERS or function not in (FC_READ_HOLDING, FC_READ_INPUT, 0x16):
            return None
        if function == FC_READ_INPUT and base == 60 and BATTERY_BASE_ADDRESS <= device < BATTERY_BASE_ADDRESS + 6:
            n = device - BATTERY_BASE_ADDRESS
            bank = self.battery_banks[n] if n < self.batteries else [0] * 120
        elif device in INVERTER_ADDRESSES:
            bank = self.holding if function == FC_READ_HOLDING else self.input
            supported = self.supported_holding if function == FC_READ_HOLDING else self.supported_input
            if not all(r in supported for r in range(base, base + count)):
                return None if self.unsupported == "refuse" else ()
        elif self.hv_banks and function == FC_READ_INPUT and (
                BCU_ADDRESS <= device < BCU_ADDRESS + HV_SLOTS or BMU_BASE_ADDRESS <= device < BMU_BASE_ADDRESS + HV_SLOTS):
            hv = self.hv_banks.get(device, {})
            return tuple(hv.get(r, 0) for r in range(base, base + count))
        elif function == FC_READ_INPUT and device in METER_ADDRESSES and (
                device in self.meter_banks or self.empty_meters_answer):
            meter = self.meter_banks.get(device, {})
            return tuple(meter.get(r, 0) for r in range(base, base + count))
        elif 0x30 <= device <= 0x37:
            return (0,) * count
        else:
            return ()
        return tuple(bank[r] if r < len(bank) else 0 for r in range(base, base + count))

    def write(self, device: int, register: int, value: int) -> bool:
        ok = device in INVERTER_ADDRESSES and register in WRITE_SAFE
        if ok:
            lo, hi = WRITE_RANGES.get(register, (0, 0xFFFF))
            ok = lo <= value <= hi and not (register in TIME_REGISTERS and value % 100 > 59)
        self.write_log.append(WriteRecord(device, register, value, ok))
        if ok and 35 <= register <= 40:
            # setting the clock: HR35..39 are collected, HR40 (written last) applies them
            self._clock_writes[register] = value
            if register == 40:
                parts = [self._clock_writes.get(r, self.holding[r]) for r in range(35, 41)]
                with contextlib.suppress(ValueError):
                    self.set_time(datetime(2000 + parts[0], *parts[1:]))
                self._clock_writes.clear()
        if ok and register < BANK_SIZE:
            self.holding[register] = value
        return ok


# --------------------------------------------------------------------------- the dongle


@dataclass
class Realism:
    delay: float = 0.0  # seconds before each reply
    fanout: bool = False  # replies go to every connected client
    unsolicited: float = 0.0  # seconds between unsolicited "cloud" replies (0 = off)
    null_rate: float = 0.0  # probability of a null frame after a reply
    corrupt_rate: float = 0.0  # probability a reply's CRC is corrupted
    split: bool = False  # send replies in two TCP segments
    garbage_rate: float = 0.0  # probability of garbage bytes before a reply
    drop_every: float = 0.0  # close every client connection after this many seconds (0 = never)


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = Framer()
        self.missed = 0
        self.since = time.monotonic()


class DongleSimulator:
    """TCP server pretending to be the WiFi dongle in front of a :class:`SimInverter`."""

    def __init__(self, inverter: SimInverter, host: str = "127.0.0.1", port: int = 8899,
                 adapter_serial: str = "WF2125G000", realism: Realism | None = None,
                 heartbeat_interval: float = 180.0, heartbeat_misses: int = 3, tick: float = 1.0,
                 replay_frames: list[bytes] | None = None, replay_interval: float = 0.2) -> None:
        self.inverter = inverter
        self.host = host
        self.port = port
        self.adapter_serial = adapter_serial
        self.realism = realism or Realism()
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_misses = heartbeat_misses
        self.tick_interval = tick
        self.replay_frames = replay_frames or []
        self.replay_interval = replay_interval
        self.clients: set[_Client] = set()
        self.stats: dict[str, int] = {"requests": 0, "writes": 0, "heartbeats_sent": 0, "heartbeats_answered": 0,
                                      "clients_dropped": 0, "connections": 0, "max_concurrent_clients": 0}
        self.rng = random.Random(inverter.rng.random())
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.on_request: Callable[[ReadRequest | WriteRequest], None] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        loops = [self._physics_loop(), self._heartbeat_loop()]
        if self.realism.unsolicited > 0:
            loops.append(self._unsolicited_loop())
        if self.replay_frames:
            loops.append(self._replay_loop())
        self._tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._server is not None:
            self._server.close()
        for c in list(self.clients):
            self._close(c)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def drop_all(self) -> None:
        """Close every client socket (what flaky dongles do); clients must reconnect."""
        for c in list(self.clients):
            self._close(c)

    def _close(self, c: _Client) -> None:
        self.clients.discard(c)
        with contextlib.suppress(Exception):
            c.writer.close()

    async def _physics_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_interval)
            now = time.monotonic()
            self.inverter.tick((now - last) * self.inverter.speed)
            last = now
            if self.realism.drop_every > 0:
                for c in list(self.clients):
                    if now - c.since > self.realism.drop_every:
                        self.stats["clients_dropped"] += 1
                        self._close(c)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.send_heartbeats()

    def send_heartbeats(self) -> None:
        frame = encode_heartbeat(self.adapter_serial, 1)
        for c in list(self.clients):
            if c.missed >= self.heartbeat_misses:
                self.stats["clients_dropped"] += 1
                self._close(c)
                continue
            c.missed += 1
            self.stats["heartbeats_sent"] += 1
            self._send(c, frame)

    async def _unsolicited_loop(self) -> None:
        while True:
            await asyncio.sleep(self.realism.unsolicited)
            fc, base = self.rng.choice([(FC_READ_INPUT, 0), (FC_READ_HOLDING, 0), (FC_READ_INPUT, 180)])
            values = self.inverter.read(0x11, fc, base, 60) or ()
            frame = encode_read_response(self.adapter_serial, 0x11, fc, self.inverter.serial, base, values)
            for c in list(self.clients):
                self._send(c, frame)

    async def _replay_loop(self) -> None:
        while True:
            for frame in self.replay_frames:
                await asyncio.sleep(self.replay_interval)
                for c in list(self.clients):
                    self._send(c, frame)

    def _send(self, c: _Client, data: bytes) -> None:
        if c.writer.is_closing():
            self.clients.discard(c)
            return
        c.writer.write(data)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = _Client(reader, writer)
        self.clients.add(c)
        self.stats["connections"] += 1
        self.stats["max_concurrent_clients"] = max(self.stats["max_concurrent_clients"], len(self.clients))
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for fr in c.framer.feed(data):
                    if isinstance(fr, Heartbeat):
                        c.missed = 0
                        self.stats["heartbeats_answered"] += 1
                    elif isinstance(fr, ReadRequest | WriteRequest):
                        await self._answer(c, fr)
        except (ConnectionError, OSError):
            pass
        finally:
            self._close(c)

    async def _answer(self, c: _Client, req: ReadRequest | WriteRequest) -> None:
        inv = self.inverter
        self.stats["requests"] += 1
        if self.on_request is not None:
            self.on_request(req)
        if isinstance(req, WriteRequest):
            self.stats["writes"] += 1
            if inv.write(req.device, req.register, req.value):
                reply = encode_write_response(self.adapter_serial, req.device, inv.serial, req.register, req.value)
            else:
                reply = encode_error_response(self.adapter_serial, req.device, 6, inv.serial, req.register,
                                              req.value)
        else:
            values = inv.read(req.device, req.function, req.base, req.count)
            if values == ():
                return  # nobody at that address: the request times out
            if values is None:
                reply = encode_error_response(self.adapter_serial, req.device, req.function, inv.serial, req.base,
                                              req.count)
            else:
                reply = encode_read_response(self.adapter_serial, req.device, req.function, inv.serial, req.base,
                                             values)
        r = self.realism
        if r.delay > 0:
            await asyncio.sleep(r.delay)
        rng = self.rng
        if r.corrupt_rate and rng.random() < r.corrupt_rate:
            reply = reply[:-2] + bytes((reply[-2] ^ 0xFF, reply[-1]))
        if r.garbage_rate and rng.random() < r.garbage_rate:
            reply = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))) + reply
        targets = list(self.clients) if r.fanout else [c]
        for t in targets:
            if r.split and len(reply) > 10:
                cut = rng.randint(1, len(reply) - 1)
                self._send(t, reply[:cut])
                with contextlib.suppress(ConnectionError):
                    await t.writer.drain()
                await asyncio.sleep(0.005)
                self._send(t, reply[cut:])
            else:
                self._send(t, reply)
        if r.null_rate and rng.random() < r.null_rate:
            self._send(c, encode_null_response(self.adapter_serial))
        with contextlib.suppress(ConnectionError):
            await c.writer.drain()


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solarbridge simulate givenergy",
                                description="GivEnergy dongle + inverter simulator (real protocol on TCP)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8899, help="TCP port (default 8899; 0 = any free port)")
    p.add_argument("--count", type=int, default=1, help="simulate this many inverters on consecutive ports")
    p.add_argument("--batteries", type=int, default=2, help="LV batteries 0..6 (default 2)")
    p.add_argument("--model", choices=sorted(SIM_MODELS), default="hybrid")
    p.add_argument("--serial", default="SA2114G000", help="inverter serial (10 characters)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--tick", type=float, default=1.0, help="physics step in real seconds")
    p.add_argument("--heartbeat", type=float, default=180.0, help="seconds between heartbeats (dongle: 180)")
    p.add_argument("--delay", type=float, default=0.0, help="reply delay in seconds (real dongles: ~0.25)")
    p.add_argument("--fanout", action="store_true", help="send every reply to all connected clients")
    p.add_argument("--unsolicited", type=float, default=0.0, help="seconds between unsolicited frames")
    p.add_argument("--null-rate", type=float, default=0.0, help="probability of a null frame after a reply")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="probability of a corrupt CRC")
    p.add_argument("--garbage-rate", type=float, default=0.0, help="probability of garbage before a reply")
    p.add_argument("--split", action="store_true", help="split replies over two TCP segments")
    p.add_argument("--drop-every", type=float, default=0.0, help="drop client connections after N seconds")
    p.add_argument("--unsupported", choices=("refuse", "timeout"), default="refuse",
                   help="how a block the model lacks is answered: an exception reply (default, as the AIO "
                        "capture shows for HR 1100) or no reply at all (the request times out)")
    p.add_argument("--replay", type=Path, help="seed registers from a capture log")
    p.add_argument("--replay-stream", action="store_true", help="also play the capture's rx frames to clients")
    return p


def _check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    for name in ("null_rate", "corrupt_rate", "garbage_rate"):
        v = getattr(a, name)
        if not 0 <= v <= 1:
            p.error(f"--{name.replace('_', '-')} must be 0..1 (got {v})")
    if not 0 <= a.batteries <= 6:
        p.error(f"--batteries must be 0..6 (got {a.batteries})")
    try:
        tcp_port(a.port, allow_zero=True)
    except ValueError as e:
        p.error(f"--port: {e}")
    if not 1 <= a.count <= 5000:
        p.error(f"--count must be 1..5000 (got {a.count})")
    if a.replay is not None and not a.replay.is_file():
        p.error(f"--replay: no such file {a.replay}")
    if a.speed <= 0 or a.tick <= 0 or a.heartbeat <= 0:
        p.error("--speed, --tick and --heartbeat must be > 0")


def make_simulators(a: argparse.Namespace) -> list[DongleSimulator]:
    sims = []
    realism = Realism(delay=a.delay, fanout=a.fanout, unsolicited=a.unsolicited, null_rate=a.null_rate,
                      corrupt_rate=a.corrupt_rate, split=a.split, garbage_rate=a.garbage_rate,
                      drop_every=a.drop_every)
    replay_frames: list[bytes] = []
    if a.replay is not None and a.replay_stream:
        replay_frames = [b for d, b in filter(None, map(parse_capture_line, a.replay.read_text().splitlines()))
                         if d == "rx"]
    for i in range(a.count):
        serial = a.serial if a.count == 1 else f"{a.serial[:7]}{i:03d}"
        inv = SimInverter(a.model, a.batteries, serial, seed=a.seed + i, speed=a.speed, unsupported=a.unsupported)
        if a.replay is not None:
            inv.seed_from_capture(a.replay)
        port = a.port + i if a.port else 0
        sims.append(DongleSimulator(inv, a.host, port, realism=realism, heartbeat_interval=a.heartbeat,
                                    tick=a.tick, replay_frames=replay_frames))
    return sims


async def _serve(sims: list[DongleSimulator]) -> None:
    from ...util.signals import StopSignals

    # handlers first: a SIGTERM right after the "listening" line must still stop cleanly
    with StopSignals() as stop:
        for s in sims:
            await s.start()
            inv = s.inverter
            packs = f"{inv.hv_modules} HV modules" if inv.hv_modules else f"{inv.batteries} batteries"
            print(f"givenergy simulator {inv.serial} ({inv.model}, {packs})"
                  f" listening on {s.host}:{s.port}", flush=True)
        await stop.wait()
        for s in sims:
            await s.stop()


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    _check(p, a)
    try:
        sims = make_simulators(a)
        asyncio.run(_serve(sims))
    except OSError as e:
        print(f"error: cannot listen on {a.host}:{a.port}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
