"""Shared helpers for the sunsynk tests: run the capture source over a file, build pcaps with dpkt."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import dpkt

from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.sources.sunsynk.source import SunsynkCaptureConfig, SunsynkCaptureSource
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "sunsynk"
FRAME = (DATA / "sunsniff_test_frame_292.bin").read_bytes()
DERIVED_PCAP = DATA / "sunsniff_test_frame_292.DERIVED.pcap"


def run_file(path: Path, **kw: object) -> tuple[list[Reading], SunsynkCaptureSource]:
    cfg = SunsynkCaptureConfig(type="sunsynk_capture", device=str(path), file=True, **kw)
    src = SunsynkCaptureSource(cfg, Context.standalone("sunsynk", "source", "sunsynk_capture"))
    out: list[Reading] = []
    asyncio.run(src.run(out.append))
    return out, src


def fields(reading: Reading) -> dict[str, float]:
    return {f["id"]: f["value"] for f in reading.extra["sunsniff"]["fields"]}


def dpkt_frame(src: tuple[str, int], dst: tuple[str, int], seq: int, payload: bytes, flags: int = 0x18,
               ack: int = 1) -> bytes:
    """An Ethernet/IPv4/TCP frame built by dpkt (an implementation independent of the simulator's)."""
    tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq % (1 << 32), ack=ack, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=dpkt.ip.IP_PROTO_TCP, data=tcp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def write_dpkt_pcap(path: Path, records: list[tuple[float, bytes]], *, ng: bool = False) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f) if ng else dpkt.pcap.Writer(f, nano=False)
        for ts, frame in records:
            w.writepkt(frame, ts=ts)
    return path
