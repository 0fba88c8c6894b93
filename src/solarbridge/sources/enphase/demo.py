"""`solarbridge demo` part: an IQ Gateway simulator read by an ``enphase`` source, and a ``nut`` port file."""

from __future__ import annotations

from pathlib import Path

from ...plugin import DemoPart
from .simulator import GatewaySimulator, Scenario


async def start(workdir: Path) -> DemoPart:
    sc = Scenario(username="demo@example.com", password="demo", soc=80.0, battery_w=-1200.0)
    sim = await GatewaySimulator(sc).start()
    port_file = Path(workdir) / "enphase-ups.dev"
    source = {
        "type": "enphase", "name": "enphase", "host": f"{sim.host}:{sim.port}", "serial": sc.serial,
        "username": sc.username, "password": sc.password, "login_url": sim.login_url,
        "tokens_url": sim.tokens_url, "cloud_ca": str(sim.cert_path), "poll_interval": 10,
    }
    sink = {"type": "nut", "name": "enphase-nut", "port_file": str(port_file), "device_id": sc.serial}
    notes = [
        f"Enphase IQ Gateway simulator on {sim.url} (serial {sc.serial}); NUT port file {port_file}",
        f"pull the grid: curl -k -d '{{\"grid\":\"off\"}}' {sim.url}/_sim/state  (ups.status turns OB in ~2 s)",
    ]
    # the gateway's own reading has the whole site's flows (its meters); per-battery readings are parts of it
    sites = [{"name": "enphase", "devices": [sc.serial]}]
    return DemoPart(title="Enphase IQ Gateway -> NUT", sources=[source], sinks=[sink], notes=notes, stop=sim.stop,
                    sites=sites)
