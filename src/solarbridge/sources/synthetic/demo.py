"""The synthetic home in `solarbridge demo`."""

from __future__ import annotations

from pathlib import Path

from ...plugin import DemoPart


async def start(workdir: Path) -> DemoPart:
    return DemoPart(
        title="synthetic home (PV, battery, grid, load)",
        sources=[{"type": "synthetic", "name": "synthetic", "interval": 2.0, "backfill": "24h",
                  "device_id": "synthetic-home"}],
        notes=["synthetic home: device 'synthetic-home', a reading every 2 s, 24 h of history back-filled"],
        sites=[{"name": "home", "devices": ["synthetic-home"]}],
    )
