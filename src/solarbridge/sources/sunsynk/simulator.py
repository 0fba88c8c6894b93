"""A Sunsynk/Inteless dongle and a fake cloud server, talking the real report format over real TCP.

``solarbridge simulate sunsynk --server 127.0.0.1:0 [--layout 292|302] [--interval S]`` starts the fake
cloud server on HOST:PORT (0 = any free port, printed on stdout) and a dongle that connects to it and sends a
report every ``--interval`` seconds, with plausible values that change (PV follows the sun, the battery
absorbs the difference, the energy counters start just below 6553.5 kWh so they soon pass 16 bits).
Capture its traffic to test the capture tool.

TCP noise switches: ``--split N`` writes each report in N pieces (separate segments), ``--coalesce`` writes
two reports in one segment, ``--noise`` sends short 0xA5-led and other messages between reports (the cloud
also answers each report), ``--reconnect K`` opens a new connection every K reports.
``--pcap FILE`` writes a synthetic capture of a session instead (with ``--retransmit P`` and
``--reorder P``: duplicated and swapped segments, which a real socket cannot be made to send).
``--json`` prints every report's values, one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ...util.ports import tcp_port
from .codec import encode

#: energy counters start here (kWh) so that they pass the 16-bit limit (6553.5 kWh) quickly
ENERGY_START = 6550.0


def _q(value: float, step: float) -> float:
    """Round to the field's resolution, the way the decoder will compute it back (raw * scale)."""
    return round(value / step) * step


@dataclass
class DongleState:
    """Plausible inverter values for one simulated installation, advanced report by report."""

    serial: str = "2107224260"
    seed: int = 1
    clock: datetime = field(default_factory=lambda: datetime(2024, 6, 21, 9, 0, 0))
    step_s: float = 300.0
    soc: float = 55.0
    energy: dict[str, float] = field(default_factory=lambda: {
        "battery_charge_total": ENERGY_START + 3.35, "battery_discharge_total": ENERGY_START - 3.0,
        "grid_import_total": ENERGY_START + 3.3, "grid_export_total": 6553.0,
        "load_consumption_total": ENERGY_START - 2.0, "pv_production_total": ENERGY_START + 3.2,
    })

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next_values(self) -> dict[str, float]:
        rng = self.rng
        hour = self.clock.hour + self.clock.minute / 60
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 13))
        pv = [round(3200 * sun * f * rng.uniform(0.9, 1.0)) for f in (0.55, 0.45, 0.0)]
        load = rng.randint(180, 2500)
        pv_total = sum(pv)
        surplus = pv_total - load
        battery = 0
        if surplus > 0 and self.soc < 100:
            battery = -min(surplus, 3000)  # charging (negative)
        elif surplus < 0 and self.soc > 20:
            battery = min(-surplus, 3000)  # discharging (positive)
        grid = load - pv_total - battery  # + import, - export
        hours = self.step_s / 3600
        self.soc = min(100.0, max(0.0, self.soc - battery * hours / 100))
        e = self.energy
        e["pv_production_total"] += pv_total * hours / 1000
        e["load_consumption_total"] += load * hours / 1000
        e["battery_charge_total"] += max(0, -battery) * hours / 1000 + 0.05
        e["battery_discharge_total"] += max(0, battery) * hours / 1000
        e["grid_import_total"] += max(0, grid) * hours / 1000 + 0.05
        e["grid_export_total"] += max(0, -grid) * hours / 1000
        bat_v = 48 + self.soc * 0.07
        v: dict[str, float] = {k: _q(x, 0.1) for k, x in e.items()}
        v.update({
            "grid_frequency": _q(rng.uniform(49.9, 50.1), 0.01),
            "inverter_temperature_dc": _q(-100 + 0.1 * round((40 + 20 * sun) * 10 + 1000), 0.1),
            "inverter_temperature_ac": _q(-100 + 0.1 * round((30 + 15 * sun) * 10 + 1000), 0.1),
            "battery_capacity": 100.0,
            "pv_voltage_1": _q(380 * (sun > 0) * rng.uniform(0.95, 1.0), 0.1),
            "pv_current_1": _q(pv[0] / 380 if sun > 0 else 0, 0.1),
            "pv_voltage_2": _q(360 * (sun > 0) * rng.uniform(0.95, 1.0), 0.1),
            "pv_current_2": _q(pv[1] / 360 if sun > 0 else 0, 0.1),
            "pv_voltage_3": 0.0, "pv_current_3": 0.0,
            "grid_voltage": _q(rng.uniform(228, 242), 0.1),
            "load_voltage": _q(rng.uniform(228, 242), 0.1),
            "grid_current": _q(grid / 235, 0.01),
            "load_current": _q(load / 235, 0.01),
            "grid_power_l1": float(grid), "grid_power": float(grid), "grid_power_ct": float(grid),
            "inverter_power": float(load), "load_power": float(load),
            "battery_temperature": _q(-100 + 0.1 * (1000 + round(rng.uniform(18, 26) * 10)), 0.1),
            "battery_voltage": _q(bat_v, 0.01),
            "battery_soc": float(round(self.soc)),
            "pv_power_1": float(pv[0]), "pv_power_2": float(pv[1]), "pv_power_3": float(pv[2]),
            "battery_power": float(battery),
            "battery_current": _q(battery / bat_v, 0.01),
            "load_frequency": _q(rng.uniform(49.9, 50.1), 0.01),
            "grid_connected": 1.0,
            "bms_charge_voltage": 56.1, "bms_charge_limit_current": 100.0, "bms_discharge_limit_current": 100.0,
            "bms_voltage": _q(bat_v + 0.05, 0.01), "bms_current": float(round(battery / bat_v)),
            "bms_temperature": _q(-100 + 0.1 * (1000 + 210), 0.1),
        })
        return v

    #: "" = the simulated clock (starts at ``clock``, advances ``step_s`` per report); "local"/"utc" = wall clock
    wall_clock: str = ""

    def next_report(self, layout: int = 292) -> tuple[bytes, dict[str, float], tuple[int, ...]]:
        if self.wall_clock:
            now = datetime.now(UTC) if self.wall_clock == "utc" else datetime.now()
            self.clock = now.replace(tzinfo=None, microsecond=0)
        values = self.next_values()
        c = self.clock
        clock = (c.year, c.month, c.day, c.hour, c.minute, c.second)
        payload = encode(values, serial=self.serial, clock=clock, layout=layout)
        self.clock = c + timedelta(seconds=self.step_s)
        return payload, values, clock


def noise_messages(rng: random.Random) -> list[bytes]:
    """Messages that are not reports: a short 0xA5-led heartbeat and some other bytes."""
    return [b"\xa5" + bytes(rng.randrange(256) for _ in range(rng.randint(8, 40))),
            bytes([rng.randrange(0x00, 0xA5)]) + bytes(rng.randrange(256) for _ in range(rng.randint(3, 60)))]


# --------------------------------------------------------------------------- live: server + dongle


class CloudServer:
    """The fake cloud: accepts dongles, reads what they send, answers each report with a short message."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, reply: bool = True) -> None:
        self.host, self.port, self.reply = host, port, reply
        self.received = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                if self.reply:
                    writer.write(b"\xa5\x0a\x00\x10\x17" + bytes(9))
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class DongleOptions:
    layout: int = 292
    interval: float = 5.0
    count: int = 0  # 0 = forever
    split: int = 1
    coalesce: bool = False
    noise: bool = False
    reconnect: int = 0
    json_out: bool = False
    serial: str = "2107224260"
    seed: int = 1
    #: "local" or "utc": the dongle clock follows the wall clock; an ISO time: simulated clock from there,
    #: five minutes per report (as a real dongle reports)
    clock: str = "local"


class Dongle:
    """Connects to the cloud and sends reports with the requested TCP noise."""

    def __init__(self, host: str, port: int, opts: DongleOptions) -> None:
        self.host, self.port, self.opts = host, port, opts
        self.state = DongleState(serial=opts.serial, seed=opts.seed)
        if opts.clock in ("local", "utc"):
            self.state.wall_clock = opts.clock
            self.state.step_s = max(opts.interval, 0.001)
        else:
            self.state.clock = datetime.fromisoformat(opts.clock).replace(tzinfo=None)
        self.rng = random.Random(opts.seed + 1)
        self.sent: list[dict[str, float]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        o = self.opts
        if o.split > 1:
            cuts = sorted(self.rng.sample(range(1, len(data)), o.split - 1))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            for p in pieces:
                writer.write(p)
                await writer.drain()
                await asyncio.sleep(0.02)  # one write per segment (TCP_NODELAY), not merged
        else:
            writer.write(data)
            await writer.drain()

    def _record(self, values: dict[str, float], clock: tuple[int, ...]) -> None:
        self.sent.append(values)
        if self.opts.json_out:
            print(json.dumps({"serial": self.state.serial, "clock": list(clock), "values": values}), flush=True)

    async def run(self) -> None:
        o = self.opts
        n = 0
        reader, writer = await self._connect()
        drain_task = asyncio.create_task(_discard(reader))
        try:
            while not o.count or n < o.count:
                payload, values, clock = self.state.next_report(o.layout)
                if o.coalesce and (not o.count or n + 1 < o.count):
                    payload2, values2, clock2 = self.state.next_report(o.layout)
                    writer.write(payload + payload2)
                    await writer.drain()
                    self._record(values, clock)
                    self._record(values2, clock2)
                    n += 2
                else:
                    await self._send(writer, payload)
                    self._record(values, clock)
                    n += 1
                if o.noise:
                    for msg in noise_messages(self.rng):
                        await asyncio.sleep(0.02)
                        writer.write(msg)
                        await writer.drain()
                if o.reconnect and n % o.reconnect == 0:
                    writer.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await writer.wait_closed()
                    drain_task.cancel()
                    reader, writer = await self._connect()
                    drain_task = asyncio.create_task(_discard(reader))
                if not o.count or n < o.count:
                    await asyncio.sleep(o.interval)
        finally:
            drain_task.cancel()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def _discard(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        while await reader.read(65536):
            pass


# --------------------------------------------------------------------------- synthetic capture files


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_frame(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, payload: bytes,
              ip_id: int = 0) -> bytes:
    """One Ethernet/IPv4/TCP frame with valid checksums."""
    s_ip, d_ip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq % (1 << 32), ack % (1 << 32), 5 << 4, flags,
                      65535, 0, 0)
    pseudo = s_ip + d_ip + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    csum = _csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), ip_id & 0xFFFF, 0x4000, 64, 6, 0,
                     s_ip, d_ip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = b"\x04\x42\x1a\x78\xac\xd0" + b"\x60\x55\xf9\xb0\x92\x14" + b"\x08\x00"
    return eth + ip + tcp + payload


def write_pcap(path: str | Path, records: Iterator[tuple[float, bytes]]) -> int:
    """Write a classic pcap (microseconds, Ethernet); returns the number of records."""
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in records:
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(frame), len(frame)))
            f.write(frame)
            n += 1
    return n


def session_frames(state: DongleState, *, reports: int, layout: int = 292, split: int = 1,
                   retransmit: float = 0.0, reorder: float = 0.0, noise: bool = False, start: float = 1.7e9,
                   interval: float = 300.0, seed: int = 7, dongle: tuple[str, int] = ("192.168.0.202", 50586),
                   cloud: tuple[str, int] = ("47.242.67.221", 51100),
                   sent: list[dict[str, float]] | None = None) -> Iterator[tuple[float, bytes]]:
    """Frames of one dongle->cloud TCP session (handshake, reports with noise, acks, FIN)."""
    rng = random.Random(seed)
    seq, ack = rng.randrange(1 << 32), rng.randrange(1 << 32)
    t = start
    yield t, tcp_frame(dongle, cloud, seq, 0, 0x02, b"")
    yield t + 0.01, tcp_frame(cloud, dongle, ack, seq + 1, 0x12, b"")
    seq += 1
    ack += 1
    yield t + 0.02, tcp_frame(dongle, cloud, seq, ack, 0x10, b"")
    for _ in range(reports):
        t += interval
        payload, values, _ = state.next_report(layout)
        if sent is not None:
            sent.append(values)
        msgs = [payload] + (noise_messages(rng) if noise else [])
        for msg in msgs:
            cuts = sorted(rng.sample(range(1, len(msg)), min(split, len(msg)) - 1)) if split > 1 else []
            segs = []
            for a, b in zip([0, *cuts], [*cuts, len(msg)], strict=True):
                segs.append((seq + a, msg[a:b]))
            seq += len(msg)
            if reorder and len(segs) > 1 and rng.random() < reorder:
                i = rng.randrange(len(segs) - 1)
                segs[i], segs[i + 1] = segs[i + 1], segs[i]
            out = []
            for s, data in segs:
                out.append((s, data))
                if retransmit and rng.random() < retransmit:
                    out.append((s, data))
            for s, data in out:
                t += 0.001
                yield t, tcp_frame(dongle, cloud, s, ack, 0x18, data)
            t += 0.02
            yield t, tcp_frame(cloud, dongle, ack, seq, 0x10, b"")
    t += 1
    yield t, tcp_frame(dongle, cloud, seq, ack, 0x11, b"")


# --------------------------------------------------------------------------- command line


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (got {text!r})")
    try:
        return host.strip("[]") or "127.0.0.1", tcp_port(port, allow_zero=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: port {e}") from None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solarbridge simulate sunsynk",
                                description="Simulated Sunsynk/Inteless dongle plus fake cloud server.")
    p.add_argument("--server", type=_hostport, default=("127.0.0.1", 0),
                   help="address of the fake cloud server (default 127.0.0.1:0 = any free port)")
    p.add_argument("--layout", type=int, choices=(292, 302), default=292)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between reports (default 5)")
    p.add_argument("--count", type=int, default=0, help="send this many reports, then exit (default: forever)")
    p.add_argument("--serial", default="2107224260", help="10-character inverter serial")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--split", type=int, default=1, metavar="N", help="write each report in N pieces")
    p.add_argument("--coalesce", action="store_true", help="send two reports in one write")
    p.add_argument("--noise", action="store_true", help="send other messages between reports")
    p.add_argument("--reconnect", type=int, default=0, metavar="K", help="new TCP connection every K reports")
    p.add_argument("--json", action="store_true", help="print each report's values as a JSON line")
    p.add_argument("--clock", default="local",
                   help="dongle clock: local or utc (wall clock), or an ISO start time advancing 5 min per "
                        "report (default local)")
    p.add_argument("--pcap", metavar="FILE", help="write a synthetic capture of a session and exit")
    p.add_argument("--retransmit", type=float, default=0.0, metavar="P",
                   help="with --pcap: probability a segment is sent twice")
    p.add_argument("--reorder", type=float, default=0.0, metavar="P",
                   help="with --pcap: probability two segments of a report are swapped")
    return p


async def _run_live(args: argparse.Namespace) -> int:
    host, port = args.server
    server = CloudServer(host, port, reply=True)
    await server.start()
    print(f"sunsynk simulator: cloud server listening on {host}:{server.port}", flush=True)
    opts = DongleOptions(layout=args.layout, interval=args.interval, count=args.count, split=args.split,
                         coalesce=args.coalesce, noise=args.noise, reconnect=args.reconnect, json_out=args.json,
                         serial=args.serial, seed=args.seed, clock=args.clock)
    dongle = Dongle(host, server.port, opts)
    try:
        await dongle.run()
    finally:
        await asyncio.sleep(0.1)
        await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if len(args.serial) != 10:
        print("sunsynk simulator: --serial must be 10 characters", file=sys.stderr)
        return 2
    if args.split < 1 or args.split > 100:
        print("sunsynk simulator: --split must be 1..100", file=sys.stderr)
        return 2
    if args.clock not in ("local", "utc"):
        try:
            datetime.fromisoformat(args.clock)
        except ValueError:
            print(f"sunsynk simulator: --clock must be local, utc or an ISO time (got {args.clock!r})",
                  file=sys.stderr)
            return 2
    if args.interval < 0:
        print("sunsynk simulator: --interval must be >= 0", file=sys.stderr)
        return 2
    if args.pcap:
        state = DongleState(serial=args.serial, seed=args.seed)
        sent: list[dict[str, float]] = []
        n = write_pcap(args.pcap, session_frames(state, reports=args.count or 10, layout=args.layout,
                                                 split=args.split, retransmit=args.retransmit,
                                                 reorder=args.reorder, noise=args.noise, sent=sent,
                                                 interval=args.interval or 300.0, seed=args.seed))
        if args.json:
            for v in sent:
                print(json.dumps({"serial": args.serial, "values": v}))
        print(f"sunsynk simulator: wrote {n} frames ({len(sent)} reports) to {args.pcap}", file=sys.stderr)
        return 0
    try:
        return asyncio.run(_run_live(args))
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        print(f"sunsynk simulator: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
