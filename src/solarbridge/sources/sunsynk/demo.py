"""Sunsynk in `solarbridge demo`: the simulated dongle talks to the fake cloud on loopback, and the
``sunsynk_capture`` source captures that traffic on ``lo`` (needs root or CAP_NET_RAW). Without capture
permission the demo replays a synthetic capture file of the same dongle instead."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ...plugin import DemoPart


async def start(workdir: Path) -> DemoPart:
    from .live import can_capture
    from .simulator import CloudServer, Dongle, DongleOptions, DongleState, session_frames, write_pcap

    workdir = Path(workdir)
    if not can_capture():
        path = workdir / "sunsynk-demo.pcap"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = DongleState(seed=4)
        write_pcap(path, session_frames(state, reports=288, split=2, retransmit=0.05, noise=True))
        return DemoPart(
            sites=[{"name": "sunsynk", "devices": [state.serial]}],
            title="Sunsynk dongle (capture file replay)",
            sources=[{"type": "sunsynk_capture", "name": "sunsynk", "device": str(path), "file": True}],
            notes=[f"sunsynk: no capture permission (root or CAP_NET_RAW), so {path} (one simulated day of "
                   "dongle traffic with split and retransmitted segments) is decoded once instead of live"],
        )
    server = CloudServer("127.0.0.1", 0)
    await server.start()
    dongle = Dongle("127.0.0.1", server.port, DongleOptions(interval=5.0, split=2, noise=True, clock="utc"))
    task = asyncio.create_task(dongle.run())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await server.stop()

    return DemoPart(
        title="Sunsynk dongle (live passive capture on lo)",
        sites=[{"name": "sunsynk", "devices": [dongle.state.serial]}],
        sources=[{"type": "sunsynk_capture", "name": "sunsynk", "device": "lo",
                  "filter": f"tcp port {server.port}", "timezone": "UTC"}],
        notes=[f"sunsynk: simulated dongle {dongle.state.serial} -> fake cloud 127.0.0.1:{server.port}, "
               "a report every 5 s, captured passively on lo"],
        stop=stop,
    )
