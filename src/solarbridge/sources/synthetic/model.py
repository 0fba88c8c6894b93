"""A plausible home, as pure arithmetic: PV on a sun curve, a load profile, a battery that obeys its limits.

No clock and no randomness of its own: the caller passes the time and a seeded ``random.Random``,
so the same seed and times give the same readings (tests rely on that).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ... import metricmap
from ...metricmap import MetricDesc


def _m(metric: str, resolution: str | None = None, kind: metricmap.Kind = "float") -> MetricDesc:
    return MetricDesc(metric, field=metric, resolution=resolution, kind=kind)


#: what the simulated home reports, at the resolution a real inverter would (0.1 W, 0.01 %, 1 mHz)
METRIC_MAP: tuple[MetricDesc, ...] = (
    _m("pv_power_w", "0.1"), _m("load_power_w", "0.1"), _m("battery_power_w", "0.1"), _m("grid_power_w", "0.1"),
    _m("battery_soc_pct", "0.01"), _m("battery_capacity_wh"), _m("grid_available", kind="bool"),
    _m("grid_voltage_v", "0.1"), _m("grid_frequency_hz", "0.001"), _m("inverter_temperature_c", "0.1"),
    *(_m(f"{name}_wh", "0.1") for name in (
        "pv_energy_today", "pv_energy_total", "load_energy_total", "grid_import_energy_total",
        "grid_export_energy_total", "battery_charge_energy_total", "battery_discharge_energy_total")),
)


@dataclass
class HomeParams:
    pv_peak_w: float = 5000.0
    sunrise_h: float = 6.0
    sunset_h: float = 20.0
    load_base_w: float = 350.0
    battery_capacity_wh: float = 10000.0
    battery_max_charge_w: float = 3000.0
    battery_max_discharge_w: float = 3000.0
    battery_reserve_pct: float = 10.0
    battery_efficiency: float = 0.95
    utc_offset_h: float = 0.0


@dataclass
class HomeState:
    soc_pct: float = 50.0
    cloud: float = 0.9
    pv_total_wh: float = 0.0
    pv_today_wh: float = 0.0
    load_total_wh: float = 0.0
    import_total_wh: float = 0.0
    export_total_wh: float = 0.0
    charge_total_wh: float = 0.0
    discharge_total_wh: float = 0.0
    day: int = -1
    grid_available: bool = True
    extra_load_w: float = 0.0
    spikes: list[tuple[float, float]] = field(default_factory=list)  # (remaining_s, watts)


def sun_fraction(local_hour: float, sunrise: float, sunset: float) -> float:
    """0..1 irradiance shape: a sine arch between sunrise and sunset, 0 at night."""
    if not sunrise < local_hour < sunset:
        return 0.0
    return math.sin(math.pi * (local_hour - sunrise) / (sunset - sunrise)) ** 1.5


def load_profile(local_hour: float) -> float:
    """Multiplier over the base load: a morning bump and a bigger evening one."""
    morning = 1.2 * math.exp(-((local_hour - 7.5) ** 2) / 1.5)
    evening = 2.5 * math.exp(-((local_hour - 19.0) ** 2) / 3.0)
    return 1.0 + morning + evening


class SyntheticHome:
    def __init__(self, params: HomeParams | None = None, rng: random.Random | None = None,
                 state: HomeState | None = None) -> None:
        self.p = params or HomeParams()
        self.rng = rng or random.Random(0)
        self.s = state or HomeState()

    def step(self, now: datetime, dt: float) -> dict[str, float | int | bool]:
        """Advance the home by ``dt`` seconds ending at ``now``; return canonical metrics."""
        p, s, rng = self.p, self.s, self.rng
        local = now + timedelta(hours=p.utc_offset_h)
        hour = local.hour + local.minute / 60 + local.second / 3600
        if local.toordinal() != s.day:
            s.day = local.toordinal()
            s.pv_today_wh = 0.0
        # clouds drift slowly between 0.3 and 1.0
        s.cloud = min(1.0, max(0.3, s.cloud + rng.gauss(0, 0.02) * math.sqrt(max(dt, 1) / 10)))
        pv = p.pv_peak_w * sun_fraction(hour, p.sunrise_h, p.sunset_h) * s.cloud
        # appliances: occasional spikes (kettle, oven) lasting minutes
        if rng.random() < min(1.0, dt / 900):
            s.spikes.append((rng.uniform(60, 1200), rng.choice([800.0, 1500.0, 2200.0, 3000.0])))
        s.spikes = [(left - dt, w) for left, w in s.spikes if left - dt > 0]
        load = p.load_base_w * load_profile(hour) * rng.uniform(0.93, 1.07) + sum(w for _, w in s.spikes)
        load += s.extra_load_w
        # battery covers the difference within its power and energy limits (+ = discharge)
        net = load - pv
        hours = dt / 3600
        if net > 0:  # deficit: discharge down to the reserve
            avail_wh = max(0.0, (s.soc_pct - p.battery_reserve_pct) / 100 * p.battery_capacity_wh)
            batt = min(net, p.battery_max_discharge_w, avail_wh / hours if hours else 0.0)
        else:  # surplus: charge up to full
            room_wh = max(0.0, (100 - s.soc_pct) / 100 * p.battery_capacity_wh)
            batt = -min(-net, p.battery_max_charge_w, room_wh / (hours * p.battery_efficiency) if hours else 0.0)
        if not s.grid_available and net - batt > 0:
            # off-grid: the battery must carry everything it can; what it cannot is shed
            batt = min(net, p.battery_max_discharge_w)
            load = pv + batt
        grid = load - pv - batt if s.grid_available else 0.0
        if batt > 0:
            s.soc_pct -= batt * hours / p.battery_capacity_wh * 100
            s.discharge_total_wh += batt * hours
        else:
            s.soc_pct -= batt * hours * p.battery_efficiency / p.battery_capacity_wh * 100
            s.charge_total_wh += -batt * hours
        s.soc_pct = min(100.0, max(0.0, s.soc_pct))
        s.pv_total_wh += pv * hours
        s.pv_today_wh += pv * hours
        s.load_total_wh += load * hours
        if grid > 0:
            s.import_total_wh += grid * hours
        else:
            s.export_total_wh += -grid * hours
        voltage = 230.0 + rng.gauss(0, 1.2) if s.grid_available else 0.0
        raw = {
            "pv_power_w": pv, "load_power_w": load, "battery_power_w": batt, "grid_power_w": grid,
            "battery_soc_pct": s.soc_pct, "battery_capacity_wh": p.battery_capacity_wh,
            "grid_available": s.grid_available, "grid_voltage_v": voltage,
            "grid_frequency_hz": 50.0 + rng.gauss(0, 0.02) if s.grid_available else 0.0,
            "inverter_temperature_c": 25 + pv / p.pv_peak_w * 20 + rng.gauss(0, 0.3),
            "pv_energy_today_wh": s.pv_today_wh, "pv_energy_total_wh": s.pv_total_wh,
            "load_energy_total_wh": s.load_total_wh, "grid_import_energy_total_wh": s.import_total_wh,
            "grid_export_energy_total_wh": s.export_total_wh, "battery_charge_energy_total_wh": s.charge_total_wh,
            "battery_discharge_energy_total_wh": s.discharge_total_wh,
        }
        return metricmap.apply(METRIC_MAP, raw)
