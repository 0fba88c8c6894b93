"""`solarbridge demo` part: a simulated SolarEdge site posting to a ``solaredge`` network source.

The simulator runs in-process (a daemon thread speaking the real protocol over loopback TCP); the
source listens on a free loopback port. The site has two inverters' worth of optimizers, a battery
and meters, and uses the legacy encryption so the whole path is exercised.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from ...plugin import DemoPart
from ...util.atomic import write_private
from .simulator import DEMO_KEY, Faults, InverterModel, make_site, run_network


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site(inv: InverterModel) -> dict[str, object]:
    """The inverter's PV, its battery and the grid meter; its PV production meter measures the same PV."""
    se_id = f"{inv.inverter_id:08X}"
    return {"name": "solaredge", "pv": [se_id], "battery": [f"{se_id}-{b}" for b in inv.battery_ids],
            "grid": f"{se_id}-meter-5_GridImportExport", "exclude": [f"{se_id}-meter-9_PVProduction"]}


async def start(workdir: Path) -> DemoPart:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key_file = workdir / "solaredge.key"
    write_private(key_file, DEMO_KEY)
    port = _free_port()
    stopping = threading.Event()
    site = make_site(1, 8, 1, seed=7, key=bytes.fromhex(DEMO_KEY))
    for m in site:
        m.sun = 0.7  # show power whatever the time of day

    def sim() -> None:
        run_network("127.0.0.1", port, site, key=bytes.fromhex(DEMO_KEY), faults=Faults(), interval=5.0, count=0,
                    duration=0.0, rng=random.Random(7), stop=stopping.is_set, quiet=True)

    thread = threading.Thread(target=sim, name="solaredge-simulator", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=8)

    return DemoPart(
        title="SolarEdge (simulated inverter, 8 optimizers, battery, encrypted link)",
        sources=[{"type": "solaredge", "name": "solaredge", "mode": "network", "listen": "127.0.0.1",
                  "ports": [port], "key_file": str(key_file)}],
        notes=[f"SolarEdge inverter simulator posting to 127.0.0.1:{port} every 5 s (legacy AES link)"],
        sites=[_site(site[0])],
        stop=stop,
    )
