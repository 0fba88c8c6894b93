"""``semonitor -n IFACE``: a minimal DHCP server and DNS responder on the inverter's own link.

Plug the inverter's Ethernet port into a spare interface of this host; the inverter gets an address
from :class:`DhcpServer` and resolves its monitoring server's name (``prod.solaredge.com``) to this
host through :class:`DnsResponder`, then connects to semonitor in network mode (TCP 22222).

Both protocols are sans-IO (``handle(bytes) -> reply``); :class:`NetServices` binds them to UDP 67
and 53 on one interface (``SO_BINDTODEVICE``; needs root or CAP_NET_BIND_SERVICE+CAP_NET_RAW).

* DHCP: leases only to SolarEdge hardware (MAC OUI 00:27:02) unless told otherwise, from a small
  pool starting right after this host's address (the original handed out exactly that address);
  DISCOVER/OFFER, REQUEST/ACK or NAK, RELEASE, DECLINE, INFORM; router and DNS server = this host.
* DNS: answers A queries for the configured names (default: every name, like the original) with
  this host's IPv4 address; other record types get an empty answer, other names NXDOMAIN.

``start()`` runs both in a background thread (for synchronous callers such as semonitor);
``serve()`` runs them in the caller's asyncio loop. ``python -m solarbridge.sources.solaredge.netservices
IFACE`` runs them standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import ipaddress
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("solarbridge.solaredge.netservices")

#: MAC prefixes of SolarEdge inverters (and Raspberry Pi boards, which the original allowed for testing)
SOLAREDGE_OUIS: tuple[str, ...] = ("00:27:02",)
RASPBERRY_PI_OUIS: tuple[str, ...] = ("b8:27:eb",)
DEFAULT_LEASE = 86400
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


class NetServicesError(RuntimeError):
    """Cannot run the services (interface without address, no permission, port taken)."""


# ---------------------------------------------------------------------------------------------
# DHCP (RFC 2131/2132), sans-IO

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
_MSG_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
              8: "INFORM"}
_COOKIE = b"\x63\x82\x53\x63"
_BOOTP = struct.Struct(">BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes, then the magic cookie
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_BROADCAST, OPT_REQUESTED_IP = 1, 3, 6, 28, 50
OPT_LEASE, OPT_MSG_TYPE, OPT_SERVER_ID, OPT_RENEWAL, OPT_REBINDING = 51, 53, 54, 58, 59


@dataclass(slots=True)
class DhcpRequest:
    op: int
    xid: int
    flags: int
    ciaddr: str
    giaddr: str
    mac: str  # "00:27:02:aa:bb:cc"
    chaddr: bytes  # 16 bytes as received
    options: dict[int, bytes]

    @property
    def msg_type(self) -> int:
        t = self.options.get(OPT_MSG_TYPE, b"")
        return t[0] if len(t) == 1 else 0


def parse_dhcp(packet: bytes) -> DhcpRequest | None:
    """A BOOTP/DHCP message, or None if it is not one."""
    if len(packet) < _BOOTP.size + 4 or packet[_BOOTP.size:_BOOTP.size + 4] != _COOKIE:
        return None
    op, htype, hlen, _hops, xid, _secs, flags, ciaddr, _yi, _si, giaddr, chaddr, _sn, _fi = \
        _BOOTP.unpack_from(packet)
    if htype != 1 or hlen != 6:
        return None
    options: dict[int, bytes] = {}
    pos, n = _BOOTP.size + 4, len(packet)
    while pos < n:
        code = packet[pos]
        if code == 255:
            break
        if code == 0:
            pos += 1
            continue
        if pos + 2 > n:
            return None
        ln = packet[pos + 1]
        if pos + 2 + ln > n:
            return None
        # a repeated option is concatenated (RFC 3396)
        options[code] = options.get(code, b"") + packet[pos + 2:pos + 2 + ln]
        pos += 2 + ln
    return DhcpRequest(op, xid, flags, socket.inet_ntoa(ciaddr), socket.inet_ntoa(giaddr),
                       ":".join(f"{b:02x}" for b in chaddr[:6]), chaddr, options)


@dataclass(slots=True)
class Lease:
    ip: str
    expires: float
    offered: bool = False  # an OFFER not yet REQUESTed


@dataclass
class DhcpServer:
    """Leases for the inverter(s) on one link. ``handle()`` returns ``(reply, destination ip)``."""

    server_ip: str
    netmask: str
    lease_time: int = DEFAULT_LEASE
    pool_size: int = 16
    #: MAC prefixes that get an address; None: every client
    allowed_ouis: tuple[str, ...] | None = SOLAREDGE_OUIS
    offer_time: float = 60.0
    leases: dict[str, Lease] = field(default_factory=dict)
    declined: set[str] = field(default_factory=set)
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.network = ipaddress.IPv4Network(f"{self.server_ip}/{self.netmask}", strict=False)
        me = ipaddress.IPv4Address(self.server_ip)
        hosts = [a for a in self.network.hosts() if a != me]
        after = [a for a in hosts if a > me] + [a for a in hosts if a < me]
        self.pool = [str(a) for a in after[:self.pool_size]]
        if not self.pool:
            raise NetServicesError(f"no addresses to lease in {self.network} (netmask {self.netmask})")
        self.broadcast = str(self.network.broadcast_address)
        if self.allowed_ouis is not None:
            self.allowed_ouis = tuple(o.lower() for o in self.allowed_ouis)

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _allowed(self, mac: str) -> bool:
        return self.allowed_ouis is None or mac.startswith(self.allowed_ouis)

    def _owner(self, ip: str, now: float) -> str | None:
        for mac, lease in self.leases.items():
            if lease.ip == ip and lease.expires > now:
                return mac
        return None

    def _choose(self, req: DhcpRequest, now: float) -> str | None:
        lease = self.leases.get(req.mac)
        if lease is not None:
            return lease.ip
        wanted = req.options.get(OPT_REQUESTED_IP)
        candidates = ([socket.inet_ntoa(wanted)] if wanted and len(wanted) == 4 else []) + self.pool
        for ip in candidates:
            if ip in self.pool and ip not in self.declined and self._owner(ip, now) is None:
                return ip
        return None

    def handle(self, packet: bytes, now: float | None = None) -> tuple[bytes, str] | None:
        now = time.time() if now is None else now
        req = parse_dhcp(packet)
        if req is None or req.op != 1:
            self._count("ignored")
            return None
        mtype = req.msg_type
        if not self._allowed(req.mac):
            self._count("other_clients")
            log.debug("DHCP %s from %s: not a SolarEdge MAC address, ignored",
                      _MSG_NAMES.get(mtype, mtype), req.mac)
            return None
        self._count(_MSG_NAMES.get(mtype, "unknown").lower())
        if mtype == DISCOVER:
            ip = self._choose(req, now)
            if ip is None:
                self._count("pool_exhausted")
                log.warning("DHCP DISCOVER from %s: no free address", req.mac)
                return None
            lease = self.leases.get(req.mac)
            if lease is None or lease.offered:
                self.leases[req.mac] = Lease(ip, now + self.offer_time, offered=True)
            return self._reply(req, OFFER, ip), "255.255.255.255"
        if mtype == REQUEST:
            server_id = req.options.get(OPT_SERVER_ID)
            if server_id is not None and server_id != socket.inet_aton(self.server_ip):
                if self._is_offer(req.mac):
                    del self.leases[req.mac]
                return None  # the client took another server's offer
            wanted = req.options.get(OPT_REQUESTED_IP)
            ip = socket.inet_ntoa(wanted) if wanted and len(wanted) == 4 else req.ciaddr
            owner = self._owner(ip, now)
            if ip not in self.pool or ip in self.declined or (owner is not None and owner != req.mac):
                log.info("DHCP REQUEST from %s for %s: NAK", req.mac, ip)
                return self._reply(req, NAK, "0.0.0.0"), "255.255.255.255"
            self.leases[req.mac] = Lease(ip, now + self.lease_time)
            log.info("DHCP lease %s to %s for %d s", ip, req.mac, self.lease_time)
            dest = req.ciaddr if req.ciaddr != "0.0.0.0" else "255.255.255.255"
            return self._reply(req, ACK, ip), dest
        if mtype == RELEASE:
            lease = self.leases.get(req.mac)
            if lease is not None and lease.ip == req.ciaddr:
                del self.leases[req.mac]
            return None
        if mtype == DECLINE:
            wanted = req.options.get(OPT_REQUESTED_IP)
            if wanted and len(wanted) == 4:
                self.declined.add(socket.inet_ntoa(wanted))
            self.leases.pop(req.mac, None)
            return None
        if mtype == INFORM and req.ciaddr != "0.0.0.0":
            return self._reply(req, ACK, "0.0.0.0", lease=False), req.ciaddr
        return None

    def _is_offer(self, mac: str) -> bool:
        lease = self.leases.get(mac)
        return lease is not None and lease.offered

    def _reply(self, req: DhcpRequest, mtype: int, yiaddr: str, lease: bool = True) -> bytes:
        me = socket.inet_aton(self.server_ip)
        head = _BOOTP.pack(2, 1, 6, 0, req.xid, 0, req.flags,
                           socket.inet_aton(req.ciaddr) if mtype == ACK else bytes(4),
                           socket.inet_aton(yiaddr), me if mtype != NAK else bytes(4),
                           socket.inet_aton(req.giaddr), req.chaddr, b"", b"")
        opts = [(OPT_MSG_TYPE, bytes([mtype])), (OPT_SERVER_ID, me)]
        if mtype != NAK:
            if lease:
                opts += [(OPT_LEASE, struct.pack(">I", self.lease_time)),
                         (OPT_RENEWAL, struct.pack(">I", self.lease_time // 2)),
                         (OPT_REBINDING, struct.pack(">I", self.lease_time * 7 // 8))]
            opts += [(OPT_MASK, socket.inet_aton(self.netmask)), (OPT_ROUTER, me), (OPT_DNS, me),
                     (OPT_BROADCAST, socket.inet_aton(self.broadcast))]
        body = b"".join(bytes([c, len(v)]) + v for c, v in opts) + b"\xff"
        packet = head + _COOKIE + body
        return packet + bytes(max(0, 300 - len(packet)))


# ---------------------------------------------------------------------------------------------
# DNS (RFC 1035), sans-IO

_DNS_HDR = struct.Struct(">HHHHHH")
QTYPE_A, QTYPE_ANY, QCLASS_IN = 1, 255, 1
RCODE_FORMERR, RCODE_NXDOMAIN, RCODE_NOTIMP = 1, 3, 4


def _read_name(msg: bytes, pos: int) -> tuple[str, int] | None:
    """An uncompressed name at ``pos`` (queries do not compress) and the offset after it."""
    labels: list[str] = []
    total = 0
    while True:
        if pos >= len(msg):
            return None
        ln = msg[pos]
        if ln == 0:
            return ".".join(labels), pos + 1
        if ln & 0xC0 or pos + 1 + ln > len(msg):
            return None
        total += ln + 1
        if total > 255:
            return None
        labels.append(msg[pos + 1:pos + 1 + ln].decode("ascii", "replace"))
        pos += 1 + ln


@dataclass
class DnsResponder:
    """Answers A queries for ``names`` (shell-style patterns, ``*`` = every name) with ``address``."""

    address: str
    names: tuple[str, ...] = ("*",)
    ttl: int = DEFAULT_LEASE
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ip = socket.inet_aton(self.address)
        self.names = tuple(n.lower().rstrip(".") for n in self.names)

    def matches(self, name: str) -> bool:
        n = name.lower().rstrip(".")
        return any(n == p or fnmatch.fnmatchcase(n, p) for p in self.names)

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def handle(self, query: bytes) -> bytes | None:
        """The response to one query, or None (not a query, or too broken to answer)."""
        if len(query) < 12:
            self._count("ignored")
            return None
        qid, flags, qdcount, _an, _ns, _ar = _DNS_HDR.unpack_from(query)
        if flags & 0x8000:
            self._count("ignored")  # a response: never answer those (no loops)
            return None
        opcode = (flags >> 11) & 0xF
        rd = flags & 0x0100
        base = 0x8000 | (opcode << 11) | 0x0400 | rd  # QR, opcode, AA, RD copied
        if opcode != 0 or qdcount != 1:
            self._count("refused")
            return _DNS_HDR.pack(qid, base | (RCODE_NOTIMP if opcode else RCODE_FORMERR), 0, 0, 0, 0)
        parsed = _read_name(query, 12)
        if parsed is None or parsed[1] + 4 > len(query):
            self._count("refused")
            return _DNS_HDR.pack(qid, base | RCODE_FORMERR, 0, 0, 0, 0)
        name, end = parsed
        qtype, qclass = struct.unpack_from(">HH", query, end)
        question = query[12:end + 4]
        if not self.matches(name):
            self._count("nxdomain")
            log.debug("DNS %s: not ours, NXDOMAIN", name)
            return _DNS_HDR.pack(qid, base | RCODE_NXDOMAIN, 1, 0, 0, 0) + question
        if qclass == QCLASS_IN and qtype in (QTYPE_A, QTYPE_ANY):
            self._count("answered")
            log.info("DNS %s -> %s", name or ".", self.address)
            answer = struct.pack(">HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, self.ttl, 4) + self._ip
            return _DNS_HDR.pack(qid, base, 1, 1, 0, 0) + question + answer
        self._count("no_data")  # AAAA, MX, ...: the name exists, no record of that type
        return _DNS_HDR.pack(qid, base, 1, 0, 0, 0) + question


# ---------------------------------------------------------------------------------------------
# binding to an interface


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    name: str
    ip: str
    netmask: str


def interface_address(name: str) -> InterfaceAddress:
    """IPv4 address and netmask of an interface (Linux ioctls)."""
    import fcntl

    if not name or len(name) > 15 or "/" in name:
        raise NetServicesError(f"interface name must be 1..15 characters without '/', got {name!r}")
    req = struct.pack("256s", name.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, req)[20:24])  # SIOCGIFADDR
            mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x891B, req)[20:24])  # SIOCGIFNETMASK
        except OSError as e:
            if e.errno == 19:  # ENODEV
                raise NetServicesError(f"no network interface {name!r}") from None
            raise NetServicesError(f"interface {name} has no IPv4 address; give it one first, e.g. "
                                   f"ip addr add 192.168.99.1/24 dev {name}") from None
    return InterfaceAddress(name, ip, mask)


def _udp_socket(interface: str, host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # no SO_REUSEADDR: on UDP it would let a second server bind the same port unnoticed
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        s.bind((host, port))
    except OSError as e:
        s.close()
        what = "permission denied (run as root)" if e.errno in (1, 13) else (e.strerror or str(e))
        raise NetServicesError(f"cannot listen on UDP {host}:{port} on {interface}: {what}") from None
    s.setblocking(False)
    return s


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, name: str, handle: Any, reply_port: int | None) -> None:
        self.name = name
        self.handle = handle
        self.reply_port = reply_port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.handle(data)
        except Exception:  # a bug must not stop the service: log it and drop the packet
            log.exception("%s: cannot handle a packet from %s", self.name, addr)
            return
        if out is None or self.transport is None:
            return
        if self.reply_port is None:  # DNS: back to the sender
            self.transport.sendto(out, addr)
        else:  # DHCP: (reply, destination ip) to the client port
            reply, dest = out
            self.transport.sendto(reply, (dest, self.reply_port))

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self.name, exc)


class NetServices:
    """DHCP + DNS running on one interface. ``close()`` stops them."""

    def __init__(self, iface: InterfaceAddress, dhcp: DhcpServer | None, dns: DnsResponder | None) -> None:
        self.interface = iface
        self.dhcp = dhcp
        self.dns = dns
        self._transports: list[asyncio.BaseTransport] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def address(self) -> str:
        return self.interface.ip

    @property
    def leases(self) -> dict[str, Lease]:
        return dict(self.dhcp.leases) if self.dhcp else {}

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        socks: list[tuple[str, socket.socket, Any, int | None]] = []
        try:
            if self.dhcp is not None:
                socks.append(("dhcp", _udp_socket(self.interface.name, "0.0.0.0", 67), self.dhcp.handle, 68))
            if self.dns is not None:
                socks.append(("dns", _udp_socket(self.interface.name, self.interface.ip, 53), self.dns.handle, None))
        except NetServicesError:
            for _n, s, _h, _p in socks:
                s.close()
            raise
        for name, s, handle, port in socks:
            tr, _ = await loop.create_datagram_endpoint(lambda n=name, h=handle, p=port: _Protocol(n, h, p),
                                                        sock=s)
            self._transports.append(tr)
        log.info("DHCP and DNS on %s (%s/%s)", self.interface.name, self.interface.ip, self.interface.netmask)

    def _close_transports(self) -> None:
        for tr in self._transports:
            tr.close()
        self._transports.clear()

    def close(self) -> None:
        """Stop serving (from any thread)."""
        if self._thread is not None and self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._thread = None
        else:
            self._close_transports()

    stop = close  # alias: semonitor's network mode calls stop()

    def __enter__(self) -> NetServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _build(interface: str, *, names: Iterable[str], lease_time: int, pool_size: int,
           allowed_ouis: tuple[str, ...] | None, dhcp: bool, dns: bool) -> NetServices:
    iface = interface_address(interface)
    if not 60 <= lease_time <= 0xFFFFFFFF // 8:
        raise NetServicesError(f"lease_time must be 60..536870911 seconds, got {lease_time}")
    if not 1 <= pool_size <= 1024:
        raise NetServicesError(f"pool_size must be 1..1024, got {pool_size}")
    return NetServices(
        iface,
        DhcpServer(iface.ip, iface.netmask, lease_time, pool_size, allowed_ouis) if dhcp else None,
        DnsResponder(iface.ip, tuple(names) or ("*",), lease_time) if dns else None,
    )


async def serve(interface: str, *, names: Iterable[str] = ("*",), lease_time: int = DEFAULT_LEASE,
                pool_size: int = 16, allowed_ouis: tuple[str, ...] | None = SOLAREDGE_OUIS,
                dhcp: bool = True, dns: bool = True) -> NetServices:
    """Start DHCP and DNS on ``interface`` in the running asyncio loop; ``close()`` the result."""
    svc = _build(interface, names=names, lease_time=lease_time, pool_size=pool_size,
                 allowed_ouis=allowed_ouis, dhcp=dhcp, dns=dns)
    await svc._open()
    return svc


def start(interface: str, *, names: Iterable[str] = ("*",), lease_time: int = DEFAULT_LEASE,
          pool_size: int = 16, allowed_ouis: tuple[str, ...] | None = SOLAREDGE_OUIS,
          dhcp: bool = True, dns: bool = True) -> NetServices:
    """Start DHCP and DNS on ``interface`` in a background thread; returns once both listen.

    Raises :class:`NetServicesError` (one line for the user) when they cannot run.
    """
    svc = _build(interface, names=names, lease_time=lease_time, pool_size=pool_size,
                 allowed_ouis=allowed_ouis, dhcp=dhcp, dns=dns)
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        svc._loop = asyncio.get_running_loop()
        svc._stop = asyncio.Event()
        try:
            await svc._open()
        except BaseException as e:
            failure.append(e)
            ready.set()
            return
        ready.set()
        try:
            await svc._stop.wait()
        finally:
            svc._close_transports()

    t = threading.Thread(target=asyncio.run, args=(main(),), name=f"netservices-{interface}", daemon=True)
    svc._thread = t
    t.start()
    ready.wait(30)
    if failure:
        t.join(5)
        svc._thread = None
        raise failure[0]
    return svc


# ---------------------------------------------------------------------------------------------
# standalone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m solarbridge.sources.solaredge.netservices",
                                description="DHCP server and DNS responder for a SolarEdge inverter on IFACE")
    p.add_argument("interface")
    p.add_argument("--name", dest="names", action="append", metavar="PATTERN",
                   help="names answered with this host's address (repeatable; default: every name)")
    p.add_argument("--lease", type=int, default=DEFAULT_LEASE, help="lease time in seconds (default 86400)")
    p.add_argument("--any-mac", action="store_true", help="lease to every client, not only SolarEdge MACs")
    p.add_argument("--no-dhcp", action="store_true", help="DNS only")
    p.add_argument("-v", action="count", default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.v > 1 else logging.INFO if a.v else logging.WARNING,
                        format="netservices: %(message)s", stream=sys.stderr)

    async def run() -> int:
        from ...util.signals import StopSignals

        with StopSignals() as stop:
            try:
                svc = await serve(a.interface, names=a.names or ("*",), lease_time=a.lease,
                                  allowed_ouis=None if a.any_mac else SOLAREDGE_OUIS, dhcp=not a.no_dhcp)
            except NetServicesError as e:
                print(f"netservices: error: {e}", file=sys.stderr)
                return 2
            print(f"ready {svc.address}", flush=True)
            await stop.wait()
            svc.close()
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
