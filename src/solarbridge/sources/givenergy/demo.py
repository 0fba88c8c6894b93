"""`solarbridge demo` part: a GivEnergy dongle simulator read by a ``givenergy`` source."""

from __future__ import annotations

from pathlib import Path

from ...plugin import DemoPart
from .simulator import DongleSimulator, Realism, SimInverter


async def start(workdir: Path) -> DemoPart:
    inv = SimInverter("hybrid", batteries=2, serial="SA2114G000", seed=7)
    sim = DongleSimulator(inv, "127.0.0.1", 0, realism=Realism(delay=0.02), heartbeat_interval=60)
    await sim.start()
    source = {"type": "givenergy", "name": "givenergy", "host": "127.0.0.1", "port": sim.port,
              "poll_interval": 5, "full_refresh_interval": 60}
    notes = [
        f"GivEnergy dongle simulator on 127.0.0.1:{sim.port} (Gen1 hybrid {inv.serial}, 2 batteries)",
        f"read it GivTCP-style: givtcp-read --host 127.0.0.1 --port {sim.port} runAll",
        f"control it: givtcp-write --host 127.0.0.1 --port {sim.port} setChargeTarget '{{\"chargeToPercent\":\"80\"}}'",
    ]
    return DemoPart(title="GivEnergy inverter (GivTCP-compatible)", sources=[source], notes=notes, stop=sim.stop,
                    sites=[{"name": "givenergy", "devices": [inv.serial]}])
