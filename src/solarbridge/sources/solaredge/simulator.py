"""A SolarEdge inverter (or an RS485 bus of several) speaking the real protocol over a pty or TCP.

``solarbridge simulate solaredge --serial PTY|--connect HOST:PORT [--rs485] [--encrypted]
[--inverters N --optimizers M --batteries K] [--interval S] [--count N]`` plus fault injection
(``--garbage P``, ``--bad-crc P``, ``--split``, ``--disconnect-every N``).

- TCP (network mode): connects to the monitoring server; with ``--encrypted`` first sends a 0x0503
  key exchange and wraps every later frame in 0x003d; asks the time (0x0501), then posts 0x0500
  telemetry every interval and waits for the ACK.
- Serial, RS232 (default): posts telemetry every interval and answers commands (param get/set,
  version, type) addressed to an inverter.
- Serial, ``--rs485``: bus of N inverters that each speak only when the master grants them the bus
  (0x0302): telemetry then 0x039a to release it; commands are answered too.

The sans-IO parts (:class:`InverterModel`, :class:`Endpoint`) are used by tests and the demo.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import functions as fn
from .crypto import KEY_PARAMS, SessionCipher, parse_key, read_key_file
from .framing import Frame, StreamDecoder, encode

# --------------------------------------------------------------------------- record builders


def record(se_type: int, raw_id: int, data: bytes) -> bytes:
    return struct.pack("<HIH", se_type, raw_id, len(data)) + data


def inverter_0010(ts: int, uptime: int, interval: int, temp: float, eday: float, eac: float, vac: float,
                  iac: float, freq: float, vdc: float, etot: float, pmax: float, pac: float) -> bytes:
    nr = 0xFF7FFFFF  # "not reported" words, as real inverters send
    words = [ts, uptime, interval, temp, eday, eac, vac, iac, freq, nr, nr, vdc, nr, etot, 0.0, nr, 0.0,
             0.0, pmax, 0.0, 0.0, nr, nr, pac, 0.0, nr]
    return struct.pack("<LLLffffffLLfLffLfffffLLffL", *words)


def inverter_0011(ts: int, uptime: int, interval: int, temp: float, eday: float, eac: float,
                  vac: tuple[float, float, float], iac: tuple[float, float, float], freq: float, vdc: float,
                  etot: float, mode: int = 4) -> bytes:
    words = [ts, uptime, interval, temp, eday, eac, *vac, *iac, freq, freq, freq, int(eday * 1.02), int(eac * 1.02),
             vdc, int(sum(iac)), etot, 0.0, 0, 0, 0, 1.0, 1.0, 1.0, mode, 1e6, 100.0, 0.0, 0]
    return struct.pack("<LLLffffffffffffLLfLffLLLfffLfffL", *words)


def optimizer_0080(ts: int, uptime: int, vmod: float, vopt: float, imod: float, eday: float, temp: float) -> bytes:
    vm = min(int(round(vmod * 8)), 0x3FF)
    vo = min(int(round(vopt * 8)), 0x3FF)
    im = min(int(round(imod * 160)), 0xFFF)
    e = min(int(round(eday * 4)), 0xFFFF)
    t = max(-128, min(127, int(round(temp / 2.0))))
    b6 = vm & 0xFF
    b7 = (vm >> 8) & 0x03 | (vo & 0x3F) << 2
    b8 = (vo >> 6) & 0x0F | (im & 0x0F) << 4
    b9 = im >> 4
    return struct.pack("<LH", ts, uptime & 0xFFFF) + bytes([b6, b7, b8, b9]) + struct.pack("<Hb", e, t)


def optimizer_0000(ts: int, inverter: int, uptime: int, vmod: float, vopt: float, imod: float, eday: float,
                   temp: float) -> bytes:
    return struct.pack("<LLLLfffff", ts, inverter, inverter, uptime, vmod, vopt, imod, eday, temp)


def battery_0030(ts: int, battery_id: str, vdc: float, idc: float, cap_nom: float, cap_act: float,
                 charge: float, e_in_total: int, e_out_total: int, temp: float, status: int, interval: int,
                 e_in: int, e_out: int) -> bytes:
    return (struct.pack("<L12sfffffLfLf", ts, battery_id.encode()[:12], vdc, idc, cap_nom, cap_act, charge,
                        e_in_total, 0.0, e_out_total, 0.0)
            + bytes.fromhex("01000000") + bytes.fromhex("ffff0000")
            + struct.pack("<fHffLLL", temp, status, 0.0, 0.0, interval, e_in, e_out))


def meter_0022(ts: int, rec_type: int, only_interval: int, total_to_grid: int, total_from_grid: int,
               interval: int, e_to: int, e_from: int, p_to: float, p_from: float | None) -> bytes:
    flag = b"\x00\x00" if not only_interval else b"\x00\x80"
    pf = b"\xff\xff\x7f\xff" if p_from is None else struct.pack("<f", p_from)
    return (struct.pack("<Lbb", ts, rec_type, only_interval)
            + struct.pack("<LH", total_to_grid, 0) + flag + struct.pack("<LH", total_from_grid, 0) + flag
            + struct.pack("<LH", 0, 0) + b"\x00\x80" + struct.pack("<LH", 0, 0) + b"\x00\x80"
            + struct.pack("<LLLf", interval, e_to, e_from, p_to) + pf)


def event_0300(ts: int, type_: int, start: int, tz_or_end: int, end_or_zero: int) -> bytes:
    return struct.pack("<LLLlLLL", ts, type_, start, tz_or_end, end_or_zero, 0, 0)


# --------------------------------------------------------------------------- device model


def sun_factor(ts: float) -> float:
    """0..1 daylight curve from local solar-ish time (peak at 13:00, dark 06:00-20:00 outside)."""
    lt = time.localtime(ts)
    h = lt.tm_hour + lt.tm_min / 60 + lt.tm_sec / 3600
    return max(0.0, math.sin(math.pi * (h - 6.0) / 14.0))


@dataclass
class InverterModel:
    """One inverter with its optimizers and batteries; plausible, deterministic values."""

    inverter_id: int
    optimizer_ids: list[int]
    battery_ids: list[str] = field(default_factory=list)
    three_phase: bool = False
    rated_w: float = 5000.0
    seed: int = 0
    params: dict[int, int] = field(default_factory=dict)
    version: tuple[int, int] = (3, 2468)
    boot: float = field(default_factory=time.time)
    eday: float = 0.0
    etot: float = 12_345_678.0
    soc: float = 55.0
    last: float | None = None
    #: a fixed daylight factor (0..1) instead of the clock's; the demo uses it to show power at night
    sun: float | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed ^ self.inverter_id)

    def telemetry(self, now: float) -> bytes:
        ts = int(now)
        interval = 300 if self.last is None else max(1, int(now - self.last))
        self.last = now
        uptime = max(0, int(now - self.boot)) + 3600
        sun = self.sun if self.sun is not None else sun_factor(now)
        pac = round(self.rated_w * sun * self.rng.uniform(0.9, 1.0), 1) if sun > 0 else 0.0
        eac = pac * interval / 3600.0
        self.eday += eac
        self.etot += eac
        temp = 25.0 + 20.0 * sun + self.rng.uniform(-0.5, 0.5)
        vdc = 380.0 if pac else 0.0
        out = []
        if self.three_phase:
            vac = tuple(round(self.rng.uniform(228, 232), 1) for _ in range(3))
            iac = tuple(round(pac / 3 / v, 3) for v in vac)
            out.append(record(0x0011, self.inverter_id, inverter_0011(ts, uptime, interval, temp, self.eday, eac,
                                                                       vac, iac, 50.0, vdc, self.etot)))  # type: ignore[arg-type]
        else:
            vac = round(self.rng.uniform(228, 242), 1)
            out.append(record(0x0010, self.inverter_id, inverter_0010(
                ts, uptime, interval, temp, self.eday, eac, vac, round(pac / vac, 3), 50.0, vdc, self.etot,
                self.rated_w, pac)))
        n = max(1, len(self.optimizer_ids))
        for i, oid in enumerate(self.optimizer_ids):
            p = pac / n * self.rng.uniform(0.95, 1.05)
            vmod = round(self.rng.uniform(32, 38), 3) if sun > 0 else 0.0
            imod = min(p / vmod, 12.0) if vmod else 0.0
            out.append(record(0x0080, oid, optimizer_0080(ts - i, uptime, vmod, min(vdc / n, 60.0), imod, self.eday / n,
                                                          temp - 5)))
        for bid in self.battery_ids:
            charging = sun > 0.3
            p = 1500.0 if charging else 800.0
            self.soc = min(100.0, max(0.0, self.soc + (0.2 if charging else -0.2)))
            v = 400.0
            e = int(p * interval / 3600)
            out.append(record(0x0030, self.inverter_id, battery_0030(
                ts, bid, v, p / v, 9800.0, 9700.0, 9700.0 * self.soc / 100, 250_000, 240_000, 24.0,
                3 if charging else 4, interval, e if charging else 0, 0 if charging else e)))
        if self.battery_ids:
            grid = 700.0 - pac * 0.5
            out.append(record(0x0022, self.inverter_id, meter_0022(
                ts, 5, 0, 1_000_000, 2_000_000, interval, int(max(0, -grid) * interval / 3600),
                int(max(0, grid) * interval / 3600), max(0.0, -grid), max(0.0, grid))))
            out.append(record(0x0022, self.inverter_id, meter_0022(ts, 9, 1, 0, 0, interval, int(eac), 0, pac, None)))
        return b"".join(out)

    def answer(self, frame: Frame) -> Frame | None:
        """The reply to a command addressed to this inverter (None for functions it ignores)."""
        f = frame.function
        if f == fn.PARAMS_GET_SINGLE and len(frame.payload) == 2:
            (param,) = struct.unpack("<H", frame.payload)
            if param not in self.params:
                return frame.reply(fn.NACK)
            return frame.reply(fn.PARAMS_SINGLE_RESPONSE, struct.pack("<LH", self.params[param], 0))
        if f == fn.PARAMS_SET_SINGLE and len(frame.payload) == 6:
            param, value = struct.unpack("<HL", frame.payload)
            self.params[param] = value
            return frame.reply(fn.ACK)
        if f == fn.GET_VERSION:
            return frame.reply(fn.VERSION_RESPONSE, struct.pack("<HH", *self.version))
        if f == 0x0034:
            return frame.reply(0x00B1, struct.pack("<H", 0x0010))
        if f in (fn.MASTER_GRANT, fn.ACK, fn.GMT_RESPONSE):
            return None
        return frame.reply(fn.NACK)


def make_site(inverters: int, optimizers: int, batteries: int, *, three_phase: bool = False, seed: int = 0,
              key: bytes | None = None) -> list[InverterModel]:
    site = []
    for i in range(inverters):
        inv_id = 0x7F104920 + i * 0x111
        opts = [0x20100000 + (i << 12) + j * 7 + 1 for j in range(optimizers)]
        bats = [f"BAT{i:02d}{j:04d}SIM" for j in range(batteries)]
        m = InverterModel(inv_id, opts, bats, three_phase=three_phase, seed=seed)
        if key is not None:
            for p, v in zip(KEY_PARAMS, struct.unpack("<4L", key), strict=True):
                m.params[p] = v
        m.params.setdefault(0x0329, 0)
        site.append(m)
    return site


# --------------------------------------------------------------------------- endpoint (framing, crypto, faults)


@dataclass
class Faults:
    garbage: float = 0.0  # probability of random bytes before a frame
    bad_crc: float = 0.0  # probability of corrupting a frame's CRC
    split: bool = False  # write frames in small random pieces
    disconnect_every: int = 0  # TCP: drop the connection after this many telemetry messages


class Endpoint:
    """The inverter side of one link: sequence numbers, optional encryption, fault injection."""

    def __init__(self, own_id: int, *, key: bytes | None = None, faults: Faults | None = None,
                 rng: random.Random | None = None) -> None:
        self.own_id = own_id
        self.key = key
        self.faults = faults or Faults()
        self.rng = rng or random.Random(own_id)
        self.seq = self.rng.randrange(0, 0x10000)
        self.cipher: SessionCipher | None = None
        self.decoder = StreamDecoder()
        self.sent_bad = 0

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def key_exchange(self) -> bytes:
        """A 0x0503 frame (plain) and the session cipher it sets up."""
        assert self.key is not None
        payload = bytes(self.rng.randrange(256) for _ in range(34))
        self.cipher = SessionCipher(self.key, payload, random=lambda n: bytes(self.rng.randrange(256) for _ in range(n)))
        return self._wire(encode(Frame(self.next_seq(), self.own_id, fn.MASTER_ADDR, fn.KEY_EXCHANGE, payload)))

    def frame(self, frame: Frame) -> bytes:
        raw = encode(frame)
        if self.cipher is not None:
            _, payload = self.cipher.encrypt(raw)
            raw = encode(Frame(self.next_seq(), self.own_id, fn.MASTER_ADDR, fn.ENCRYPTED, payload))
        return self._wire(raw)

    def _wire(self, raw: bytes) -> bytes:
        f = self.faults
        if f.bad_crc and self.rng.random() < f.bad_crc:
            raw = raw[:-1] + bytes([raw[-1] ^ 0x5A])
            self.sent_bad += 1
        if f.garbage and self.rng.random() < f.garbage:
            junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 40)))
            raw = junk.replace(b"\x12\x34", b"\x12\x35") + raw
        return raw

    def receive(self, data: bytes) -> list[Frame]:
        frames = []
        for fr in self.decoder.feed(data):
            if fr.function == fn.ENCRYPTED and self.cipher is not None:
                try:
                    from .framing import decode
                    fr = decode(self.cipher.decrypt(fr.payload)[1])
                except ValueError:
                    continue
            frames.append(fr)
        return frames


# --------------------------------------------------------------------------- I/O


class Link:
    """A byte pipe (socket or pty fd) with split-write fault injection."""

    def __init__(self, fd: int, write: Callable[[bytes], int], close: Callable[[], None], split: bool,
                 rng: random.Random) -> None:
        self.fd, self._write, self._close, self.split, self.rng = fd, write, close, split, rng

    def send(self, data: bytes) -> None:
        if not self.split:
            self._sendall(data)
            return
        pos = 0
        while pos < len(data):
            n = self.rng.randrange(1, 17)
            self._sendall(data[pos:pos + n])
            pos += n
            time.sleep(0.0005)

    def _sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self._write(bytes(view))
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
                continue
            view = view[n:]

    def read(self, timeout: float) -> bytes | None:
        """Bytes available within ``timeout`` (b"" when none), None on EOF."""
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return b""
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return None
        return data or None

    def close(self) -> None:
        self._close()


def open_pty(path: str, rng: random.Random, split: bool) -> Link:
    import termios
    import tty

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd, termios.TCSANOW)  # TCSAFLUSH would discard a command already waiting
    except (OSError, termios.error):
        pass
    return Link(fd, lambda b: os.write(fd, b), lambda: os.close(fd), split, rng)


def open_tcp(host: str, port: int, rng: random.Random, split: bool, timeout: float = 10.0) -> Link:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    return Link(s.fileno(), s.send, s.close, split, rng)


@dataclass
class Stats:
    telemetry: int = 0
    acks: int = 0
    commands: int = 0
    grants: int = 0
    connections: int = 0


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(f"simulate solaredge: {msg}", file=sys.stderr, flush=True)


def run_network(host: str, port: int, site: list[InverterModel], *, key: bytes | None, faults: Faults,
                interval: float, count: int, duration: float, rng: random.Random, stop: Callable[[], bool],
                quiet: bool = False, ack_timeout: float = 5.0) -> Stats:
    """Connect to a monitoring server and post telemetry; reconnect after disconnects."""
    stats = Stats()
    first = site[0]
    deadline = time.monotonic() + duration if duration else math.inf
    while not stop() and time.monotonic() < deadline and (not count or stats.telemetry < count):
        try:
            link = open_tcp(host, port, rng, faults.split)
        except OSError as e:
            _log(quiet, f"cannot connect to {host}:{port}: {e.strerror or e}; retrying")
            time.sleep(0.5)
            continue
        stats.connections += 1
        ep = Endpoint(first.inverter_id, key=key, faults=faults, rng=rng)
        sent_on_link = 0

        def commands(fr: Frame, link: Link = link, ep: Endpoint = ep) -> None:
            _answer_commands(link, ep, site, fr, stats)

        try:
            if key is not None:
                link.send(ep.key_exchange())
                _await(link, ep, fn.ACK, ack_timeout, other=commands)
            link.send(ep.frame(Frame(ep.next_seq(), first.inverter_id, fn.MASTER_ADDR, fn.GET_GMT)))
            _await(link, ep, fn.GMT_RESPONSE, ack_timeout, other=commands)
            next_at = time.monotonic()
            while not stop() and time.monotonic() < deadline and (not count or stats.telemetry < count):
                now = time.monotonic()
                if now < next_at:
                    data = link.read(min(next_at - now, 0.25))  # short slices: stop() is seen soon
                    if data is None:
                        raise ConnectionError("server closed the connection")
                    for fr in ep.receive(data):
                        commands(fr)
                    continue
                payload = b"".join(m.telemetry(time.time()) for m in site)
                seq = ep.next_seq()
                link.send(ep.frame(Frame(seq, first.inverter_id, fn.MASTER_ADDR, fn.POST_DATA, payload)))
                stats.telemetry += 1
                sent_on_link += 1
                if _await(link, ep, fn.ACK, ack_timeout, seq=seq if key is None else None, other=commands):
                    stats.acks += 1
                next_at = time.monotonic() + interval
                if faults.disconnect_every and sent_on_link >= faults.disconnect_every:
                    _log(quiet, "injected disconnect")
                    break
        except (ConnectionError, OSError) as e:
            _log(quiet, f"connection lost: {e}")
            time.sleep(0.2)
        finally:
            link.close()
    return stats


def _await(link: Link, ep: Endpoint, function: int, timeout: float, seq: int | None = None,
           other: Callable[[Frame], None] | None = None) -> bool:
    """Wait for a reply; frames that are not it (commands from the server) go to ``other``."""
    end = time.monotonic() + timeout
    found = False
    while not found and time.monotonic() < end:
        data = link.read(end - time.monotonic())
        if data is None:
            raise ConnectionError("peer closed the connection")
        for fr in ep.receive(data):
            if not found and fr.function == function and (seq is None or fr.seq == seq):
                found = True
            elif other is not None:
                other(fr)
    return found


def _answer_commands(link: Link, ep: Endpoint, site: list[InverterModel], fr: Frame, stats: Stats) -> None:
    for m in site:
        if fr.dst == m.inverter_id:
            ans = m.answer(fr)
            if ans is not None:
                stats.commands += 1
                link.send(ep.frame(ans))


def run_serial(path: str, site: list[InverterModel], *, rs485: bool, faults: Faults, interval: float, count: int,
               duration: float, rng: random.Random, stop: Callable[[], bool], quiet: bool = False) -> Stats:
    """RS232: push telemetry every interval and answer commands. RS485: speak only when granted."""
    stats = Stats()
    link = open_pty(path, rng, faults.split)
    eps = {m.inverter_id: Endpoint(m.inverter_id, faults=faults, rng=rng) for m in site}
    decoder = StreamDecoder()
    deadline = time.monotonic() + duration if duration else math.inf
    next_at = time.monotonic()
    try:
        while not stop() and time.monotonic() < deadline:
            if count and stats.telemetry >= count:
                break
            now = time.monotonic()
            wait = 0.2 if rs485 else max(0.0, next_at - now)
            data = link.read(min(wait, 0.2))
            if data is None:
                time.sleep(0.05)  # pty without a reader on the other side yet
                continue
            for fr in decoder.feed(data):
                for m in site:
                    if fr.dst != m.inverter_id:
                        continue
                    ep = eps[m.inverter_id]
                    if fr.function == fn.MASTER_GRANT:
                        stats.grants += 1
                        payload = m.telemetry(time.time())
                        link.send(ep.frame(Frame(ep.next_seq(), m.inverter_id, fn.MASTER_ADDR, fn.POST_DATA,
                                                 payload)))
                        stats.telemetry += 1
                        link.send(ep.frame(fr.reply(fn.MASTER_GRANT_ACK)))
                    else:
                        ans = m.answer(fr)
                        if ans is not None:
                            stats.commands += 1
                            link.send(ep.frame(ans))
            if not rs485 and time.monotonic() >= next_at:
                m = site[0]
                ep = eps[m.inverter_id]
                payload = b"".join(x.telemetry(time.time()) for x in site)
                link.send(ep.frame(Frame(ep.next_seq(), m.inverter_id, fn.MASTER_ADDR, fn.POST_DATA, payload)))
                stats.telemetry += 1
                next_at = time.monotonic() + interval
    finally:
        link.close()
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solarbridge simulate solaredge",
                                description="Simulated SolarEdge inverter(s) speaking the real protocol.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", metavar="PTY", help="serial device (e.g. one end of a pty pair)")
    where.add_argument("--connect", metavar="HOST:PORT", help="monitoring server to connect to (network mode)")
    p.add_argument("--rs485", action="store_true", help="serial: act as an RS485 bus (speak when granted)")
    p.add_argument("--encrypted", action="store_true", help="network: legacy encryption (0x0503 + 0x003d)")
    p.add_argument("--key", metavar="KEYFILE", help="key file (32 hex chars); default: a fixed demo key")
    p.add_argument("--write-key", metavar="FILE", help="write the key in use to FILE (0600)")
    p.add_argument("--inverters", type=int, default=1, metavar="N")
    p.add_argument("--optimizers", type=int, default=4, metavar="M", help="optimizers per inverter")
    p.add_argument("--batteries", type=int, default=0, metavar="K", help="batteries per inverter (adds meters)")
    p.add_argument("--three-phase", action="store_true")
    p.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between telemetry posts")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N telemetry messages")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--garbage", type=float, default=0.0, metavar="P", help="probability of junk before a frame")
    p.add_argument("--bad-crc", type=float, default=0.0, metavar="P", help="probability of a corrupted CRC")
    p.add_argument("--split", action="store_true", help="write frames in small pieces")
    p.add_argument("--disconnect-every", type=int, default=0, metavar="N",
                   help="network: drop the connection after N telemetry messages")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


#: key used when --encrypted is given without --key (it is the published test key of the original suite)
DEMO_KEY = "e1992523f4ddbb47d5336f6f177e3278"


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    for name, lo, hi in (("inverters", 1, 32), ("optimizers", 0, 200), ("batteries", 0, 4)):
        v = getattr(a, name)
        if not lo <= v <= hi:
            p.error(f"--{name} must be between {lo} and {hi}, got {v}")
    for name in ("garbage", "bad_crc"):
        v = getattr(a, name)
        if not 0.0 <= v <= 1.0:
            p.error(f"--{name.replace('_', '-')} is a probability between 0 and 1, got {v}")
    if a.interval <= 0:
        p.error(f"--interval must be positive, got {a.interval}")
    if a.encrypted and a.serial:
        p.error("--encrypted applies to network mode (--connect)")
    if a.rs485 and not a.serial:
        p.error("--rs485 needs --serial")
    key = None
    try:
        key = read_key_file(a.key) if a.key else parse_key(DEMO_KEY)
    except ValueError as e:
        p.error(str(e))
    if a.write_key:
        from ...util.atomic import write_private

        write_private(a.write_key, key.hex())
    rng = random.Random(a.seed)
    site = make_site(a.inverters, a.optimizers, a.batteries, three_phase=a.three_phase, seed=a.seed, key=key)
    faults = Faults(a.garbage, a.bad_crc, a.split, a.disconnect_every)
    ids = ", ".join(f"{m.inverter_id:08X}" for m in site)
    _log(a.quiet, f"inverters {ids}, {a.optimizers} optimizers and {a.batteries} batteries each")
    try:
        if a.connect:
            host, _, port = a.connect.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                p.error(f"--connect wants HOST:PORT, got {a.connect!r}")
            stats = run_network(host.strip("[]"), int(port), site, key=key if a.encrypted else None, faults=faults,
                                interval=a.interval, count=a.count, duration=a.duration, rng=rng,
                                stop=lambda: False, quiet=a.quiet)
        else:
            if not Path(a.serial).exists():
                p.error(f"--serial {a.serial}: no such device")
            stats = run_serial(a.serial, site, rs485=a.rs485, faults=faults, interval=a.interval, count=a.count,
                               duration=a.duration, rng=rng, stop=lambda: False, quiet=a.quiet)
    except KeyboardInterrupt:
        return 0
    _log(a.quiet, f"sent {stats.telemetry} telemetry messages, {stats.acks} acknowledged, "
                  f"{stats.commands} commands answered, {stats.grants} grants, {stats.connections} connections")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
