"""LAN autodiscovery: a bounded concurrent TCP sweep of local /24s for port 8899, then identify each hit.

Like GivTCP's findInvertor: every host of each local /24 gets a TCP connect with a 1 s timeout;
each address that accepts is asked for HR 0-59 at device 0x11 to learn serial and model.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Iterable
from typing import Any

from .client import DEFAULT_PORT, GivEnergyClient, GivEnergyError


def local_networks(include_loopback: bool = False) -> list[ipaddress.IPv4Network]:
    """The /24 around each IPv4 address of this host (from ``ip -j addr``)."""
    nets: list[ipaddress.IPv4Network] = []
    try:
        out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=5, check=True)
        data = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return nets
    for iface in data:
        for a in iface.get("addr_info", []):
            try:
                ip = ipaddress.IPv4Address(a["local"])
            except (KeyError, ValueError):
                continue
            if ip.is_loopback and not include_loopback:
                continue
            if ip.is_link_local:
                continue
            net = ipaddress.IPv4Network(f"{ip}/24", strict=False)
            if net not in nets:
                nets.append(net)
    return nets


async def _probe(host: str, port: int, timeout: float, sem: asyncio.Semaphore) -> str | None:
    async with sem:
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return None
        w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.wait_closed(), timeout)
        return host


async def scan(networks: Iterable[ipaddress.IPv4Network], port: int = DEFAULT_PORT, timeout: float = 1.0,
               concurrency: int = 64) -> list[str]:
    """Addresses in ``networks`` accepting TCP on ``port`` (sorted)."""
    sem = asyncio.Semaphore(concurrency)
    hosts = [str(h) for net in networks for h in net.hosts()]
    found = await asyncio.gather(*(_probe(h, port, timeout, sem) for h in hosts))
    return sorted((h for h in found if h), key=ipaddress.IPv4Address)


async def identify(host: str, port: int = DEFAULT_PORT, timeout: float = 2.0) -> dict[str, Any] | None:
    """Serial, model and firmware of the inverter behind a dongle; None if it does not answer."""
    client = GivEnergyClient(host, port, timeout=timeout, retries=1, gap=0)
    try:
        await client.connect()
        await client.read(3, 0, 60, device=0x11)
    except GivEnergyError:
        return None
    finally:
        await client.close()
    plant = client.plant
    return {"host": host, "port": port, "serial": plant.serial, "model": plant.model.label,
            "model_key": plant.model.key, "firmware": plant.firmware(), "adapter_serial": plant.adapter_serial}


async def discover(networks: Iterable[ipaddress.IPv4Network] | None = None, port: int = DEFAULT_PORT,
                   timeout: float = 1.0, concurrency: int = 64) -> list[dict[str, Any]]:
    nets = list(networks) if networks is not None else local_networks()
    hosts = await scan(nets, port, timeout, concurrency)
    results = await asyncio.gather(*(identify(h, port) for h in hosts))
    return [r for r in results if r is not None]
