"""DHCP server and DNS responder for ``semonitor -n``: the sans-IO handlers checked with dpkt's
independent DHCP/DNS code, then for real inside two network namespaces joined by a veth pair, with
BusyBox ``udhcpc`` as the client and ``dig`` for DNS."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers import finish, wait_for
from solarbridge.sources.solaredge import netservices as ns

SE_MAC = bytes.fromhex("002702a1b2c3")
OTHER_MAC = bytes.fromhex("3c22fb010203")


def dhcp_packet(mtype: int, mac: bytes = SE_MAC, *, xid: int = 0x1234, ciaddr: str = "0.0.0.0",
                requested: str | None = None, server_id: str | None = None) -> bytes:
    opts = [(dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([mtype]))]
    if requested:
        opts.append((dpkt.dhcp.DHCP_OPT_REQ_IP, socket.inet_aton(requested)))
    if server_id:
        opts.append((dpkt.dhcp.DHCP_OPT_SERVER_ID, socket.inet_aton(server_id)))
    opts.append((dpkt.dhcp.DHCP_OPT_PARAM_REQ, bytes([1, 3, 6, 51])))
    d = dpkt.dhcp.DHCP(op=dpkt.dhcp.DHCP_OP_REQUEST, xid=xid, chaddr=mac, opts=opts,
                       ciaddr=int.from_bytes(socket.inet_aton(ciaddr), "big"))
    return bytes(d)


def reply(out: tuple[bytes, str] | None) -> tuple[dpkt.dhcp.DHCP, dict[int, bytes], str]:
    assert out is not None
    d = dpkt.dhcp.DHCP(out[0])
    return d, dict(d.opts), out[1]


def ip_of(n: int) -> str:
    return socket.inet_ntoa(n.to_bytes(4, "big"))


# ---------------------------------------------------------------------------------------------
# DHCP handler


def test_discover_offer_request_ack() -> None:
    srv = ns.DhcpServer("192.168.99.1", "255.255.255.0")
    d, opts, dest = reply(srv.handle(dhcp_packet(dpkt.dhcp.DHCPDISCOVER), now=1000))
    assert d.op == dpkt.dhcp.DHCP_OP_REPLY and d.xid == 0x1234 and d.chaddr == SE_MAC
    assert ip_of(d.yiaddr) == "192.168.99.2"  # the address after ours, as the original gave out
    assert opts[dpkt.dhcp.DHCP_OPT_MSGTYPE] == bytes([dpkt.dhcp.DHCPOFFER])
    assert opts[dpkt.dhcp.DHCP_OPT_SERVER_ID] == socket.inet_aton("192.168.99.1")
    assert opts[dpkt.dhcp.DHCP_OPT_ROUTER] == opts[dpkt.dhcp.DHCP_OPT_DNS_SVRS] == socket.inet_aton("192.168.99.1")
    assert opts[dpkt.dhcp.DHCP_OPT_NETMASK] == socket.inet_aton("255.255.255.0")
    assert int.from_bytes(opts[dpkt.dhcp.DHCP_OPT_LEASE_SEC], "big") == 86400
    assert dest == "255.255.255.255" and len(srv.handle(dhcp_packet(1), now=1000)[0]) >= 300  # type: ignore[index]
    d, opts, _ = reply(srv.handle(dhcp_packet(dpkt.dhcp.DHCPREQUEST, requested="192.168.99.2",
                                              server_id="192.168.99.1"), now=1001))
    assert opts[dpkt.dhcp.DHCP_OPT_MSGTYPE] == bytes([dpkt.dhcp.DHCPACK]) and ip_of(d.yiaddr) == "192.168.99.2"
    assert srv.leases[SE_MAC.hex(":")].expires == 1001 + 86400
    # renewing (ciaddr set): unicast ACK to the client
    _d, _o, dest = reply(srv.handle(dhcp_packet(dpkt.dhcp.DHCPREQUEST, ciaddr="192.168.99.2"), now=5000))
    assert dest == "192.168.99.2"


def test_only_solaredge_macs_unless_any() -> None:
    srv = ns.DhcpServer("10.0.0.1", "255.255.255.0")
    assert srv.handle(dhcp_packet(dpkt.dhcp.DHCPDISCOVER, OTHER_MAC)) is None
    assert srv.stats["other_clients"] == 1
    anyone = ns.DhcpServer("10.0.0.1", "255.255.255.0", allowed_ouis=None)
    assert reply(anyone.handle(dhcp_packet(dpkt.dhcp.DHCPDISCOVER, OTHER_MAC)))[0].yiaddr


def test_two_inverters_pool_exhaustion_release_and_decline() -> None:
    srv = ns.DhcpServer("10.0.0.1", "255.255.255.0", pool_size=2)
    macs = [bytes.fromhex(f"00270200000{i}") for i in range(3)]
    got = []
    for m in macs[:2]:
        d, _, _ = reply(srv.handle(dhcp_packet(1, m), now=0))
        got.append(ip_of(d.yiaddr))
        reply(srv.handle(dhcp_packet(3, m, requested=got[-1], server_id="10.0.0.1"), now=0))
    assert got == ["10.0.0.2", "10.0.0.3"]
    assert srv.handle(dhcp_packet(1, macs[2]), now=0) is None and srv.stats["pool_exhausted"] == 1
    # someone else's address: NAK
    _, opts, _ = reply(srv.handle(dhcp_packet(3, macs[2], requested="10.0.0.2"), now=0))
    assert opts[dpkt.dhcp.DHCP_OPT_MSGTYPE] == bytes([dpkt.dhcp.DHCPNAK])
    srv.handle(dhcp_packet(dpkt.dhcp.DHCPRELEASE, macs[0], ciaddr="10.0.0.2"), now=1)
    assert ip_of(reply(srv.handle(dhcp_packet(1, macs[2]), now=1))[0].yiaddr) == "10.0.0.2"
    srv.handle(dhcp_packet(dpkt.dhcp.DHCPDECLINE, macs[2], requested="10.0.0.2"), now=2)
    assert srv.handle(dhcp_packet(1, macs[2]), now=2) is None  # declined address is not offered again
    # expired leases come back
    assert ip_of(reply(srv.handle(dhcp_packet(1, macs[2]), now=10**6))[0].yiaddr) == "10.0.0.3"


def test_request_for_another_server_and_inform() -> None:
    srv = ns.DhcpServer("10.0.0.1", "255.255.255.0")
    srv.handle(dhcp_packet(1), now=0)
    assert srv.handle(dhcp_packet(3, requested="10.0.0.2", server_id="10.0.0.254"), now=0) is None
    assert srv.leases == {}
    d, opts, dest = reply(srv.handle(dhcp_packet(dpkt.dhcp.DHCPINFORM, ciaddr="10.0.0.77"), now=0))
    assert dest == "10.0.0.77" and d.yiaddr == 0 and dpkt.dhcp.DHCP_OPT_LEASE_SEC not in opts


def test_no_pool_in_a_slash_32() -> None:
    with pytest.raises(ns.NetServicesError, match="no addresses"):
        ns.DhcpServer("10.0.0.1", "255.255.255.255")


@given(st.binary(max_size=600))
def test_fuzz_dhcp_garbage_never_crashes(data: bytes) -> None:
    srv = ns.DhcpServer("10.0.0.1", "255.255.255.0", allowed_ouis=None)
    srv.handle(data, now=0)
    # and with a valid header in front
    srv.handle(dhcp_packet(1)[:240] + data, now=0)


# ---------------------------------------------------------------------------------------------
# DNS handler


def query(name: str, qtype: int = dpkt.dns.DNS_A, qid: int = 77) -> bytes:
    q = dpkt.dns.DNS(id=qid, qr=dpkt.dns.DNS_Q, rd=1, qd=[dpkt.dns.DNS.Q(name=name, type=qtype, cls=dpkt.dns.DNS_IN)])
    return bytes(q)


def test_dns_answers_the_server_name_with_this_host() -> None:
    r = ns.DnsResponder("192.168.99.1", names=("prod.solaredge.com", "*.solaredge.com"))
    ans = dpkt.dns.DNS(r.handle(query("PROD.SolarEdge.com")))
    assert ans.id == 77 and ans.qr == 1 and ans.aa == 1 and ans.rcode == 0
    assert [(a.name.lower(), a.type, a.rdata) for a in ans.an] == \
        [("prod.solaredge.com", dpkt.dns.DNS_A, socket.inet_aton("192.168.99.1"))]
    assert dpkt.dns.DNS(r.handle(query("monitoring.solaredge.com"))).an[0].rdata == socket.inet_aton("192.168.99.1")
    nx = dpkt.dns.DNS(r.handle(query("example.org")))
    assert nx.rcode == dpkt.dns.DNS_RCODE_NXDOMAIN and not nx.an
    aaaa = dpkt.dns.DNS(r.handle(query("prod.solaredge.com", dpkt.dns.DNS_AAAA)))
    assert aaaa.rcode == 0 and not aaaa.an
    everything = ns.DnsResponder("10.1.1.1")  # the original's behaviour: every name is this host
    assert dpkt.dns.DNS(everything.handle(query("example.org"))).an[0].rdata == socket.inet_aton("10.1.1.1")


def test_dns_never_answers_responses_and_rejects_odd_queries() -> None:
    r = ns.DnsResponder("10.1.1.1")
    resp = r.handle(query("x.y"))
    assert resp is not None and r.handle(resp) is None  # no answer loops
    two = dpkt.dns.DNS(id=1, qd=[dpkt.dns.DNS.Q(name="a"), dpkt.dns.DNS.Q(name="b")])
    assert dpkt.dns.DNS(r.handle(bytes(two))).rcode == dpkt.dns.DNS_RCODE_FORMERR
    assert r.handle(b"\x00" * 5) is None


@given(st.binary(max_size=300))
def test_fuzz_dns_garbage_never_crashes(data: bytes) -> None:
    r = ns.DnsResponder("10.1.1.1")
    for q in (data, query("prod.solaredge.com")[:12] + data):
        out = r.handle(q)
        if out is not None:
            assert len(out) >= 12 and out[2] & 0x80  # always a response


@given(st.lists(st.from_regex(r"[a-zA-Z0-9-]{1,20}", fullmatch=True), min_size=1, max_size=5))
def test_fuzz_dns_any_name_round_trips_through_dpkt(labels: list[str]) -> None:
    name = ".".join(labels)
    r = ns.DnsResponder("10.9.8.7")
    ans = dpkt.dns.DNS(r.handle(query(name)))
    assert ans.an[0].name.lower() == name.lower() and ans.an[0].rdata == socket.inet_aton("10.9.8.7")


def test_interface_errors() -> None:
    with pytest.raises(ns.NetServicesError, match="no network interface"):
        ns.interface_address("nosuch0")
    with pytest.raises(ns.NetServicesError, match="1..15 characters"):
        ns.start("x" * 20)


# ---------------------------------------------------------------------------------------------
# for real: two network namespaces and a veth pair


_counter = itertools.count()


@dataclass
class Link:
    server_ns: str
    client_ns: str
    server_if: str
    client_if: str
    server_ip: str = "10.77.0.1"


def _run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr}")
    return r


@pytest.fixture
def link() -> Iterator[Link]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "udhcpc", "dig"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    n = f"{os.getpid() % 100000}x{next(_counter)}"
    lk = Link(f"sbsrv{n}", f"sbcli{n}", f"sbs{n}", f"sbc{n}")
    _run("ip", "netns", "add", lk.server_ns)
    try:
        _run("ip", "netns", "add", lk.client_ns)
        # the veth pair is created inside the server namespace, so it never touches the host's network
        _run("ip", "-n", lk.server_ns, "link", "add", lk.server_if, "type", "veth", "peer", "name", lk.client_if,
             "netns", lk.client_ns)
        _run("ip", "-n", lk.server_ns, "addr", "add", f"{lk.server_ip}/24", "dev", lk.server_if)
        for nsname in (lk.server_ns, lk.client_ns):
            _run("ip", "-n", nsname, "link", "set", "lo", "up")
        _run("ip", "-n", lk.client_ns, "link", "set", lk.client_if, "address", SE_MAC.hex(":"))
        _run("ip", "-n", lk.server_ns, "link", "set", lk.server_if, "up")
        _run("ip", "-n", lk.client_ns, "link", "set", lk.client_if, "up")
        yield lk
    finally:
        _run("ip", "netns", "del", lk.client_ns, check=False)
        _run("ip", "netns", "del", lk.server_ns, check=False)
        shutil.rmtree(f"/etc/netns/{lk.client_ns}", ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir("/etc/netns")  # only if empty, i.e. only if these tests made it


def _start_services(lk: Link, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", lk.server_ns, sys.executable, "-m",
                             "solarbridge.sources.solaredge.netservices", lk.server_if, "-v", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready <ip>" once both sockets listen
    if not line.startswith("ready"):
        proc.kill()
        raise AssertionError(f"services did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _out, err = finish(proc, 10)  # what readline() buffered is kept
    assert proc.returncode == 0, err
    return err


def _udhcpc(lk: Link, tmp_path: Path, tries: int = 3) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "lease.env"
    script = tmp_path / "udhcpc.sh"
    script.write_text(f"""#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/$mask" dev "$interface"
{{ echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "dns=$dns"; echo "lease=$lease";
   echo "serverid=$serverid"; }} > {env_file}
""")
    script.chmod(0o755)
    return _run("ip", "netns", "exec", lk.client_ns, "udhcpc", "-i", lk.client_if, "-f", "-q", "-n",
                "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script), check=False, timeout=60)


def _lease(tmp_path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "lease.env").read_text().split())


@pytest.mark.root
def test_inverter_gets_a_lease_and_resolves_the_server_to_this_host(link: Link, tmp_path: Path) -> None:
    proc = _start_services(link, "--name", "prod.solaredge.com", "--name", "*.solaredge.com", "--lease", "3600")
    try:
        r = _udhcpc(link, tmp_path)
        assert r.returncode == 0, r.stderr
        lease = _lease(tmp_path)
        assert lease == {"ip": "10.77.0.2", "mask": "24", "router": "10.77.0.1", "dns": "10.77.0.1",
                         "lease": "3600", "serverid": "10.77.0.1"}
        # the inverter now asks our DNS for its server
        dig = _run("ip", "netns", "exec", link.client_ns, "dig", "+short", "+time=2", "+tries=2",
                   f"@{link.server_ip}", "prod.solaredge.com", "A")
        assert dig.stdout.split() == [link.server_ip]
        full = _run("ip", "netns", "exec", link.client_ns, "dig", "+time=2", "+tries=2", f"@{link.server_ip}",
                    "www.example.org")
        assert "status: NXDOMAIN" in full.stdout
        aaaa = _run("ip", "netns", "exec", link.client_ns, "dig", "+short", "+time=2", f"@{link.server_ip}",
                    "prod.solaredge.com", "AAAA")
        assert aaaa.stdout.strip() == ""
        # getent through the namespace's resolv.conf (ip netns exec bind-mounts /etc/netns/NAME/)
        etc = Path(f"/etc/netns/{link.client_ns}")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {lease['dns']}\n")
        ge = _run("ip", "netns", "exec", link.client_ns, "getent", "ahostsv4", "prod.solaredge.com")
        assert ge.stdout.split()[0] == link.server_ip
    finally:
        err = _stop(proc)
    assert "DHCP lease 10.77.0.2 to 00:27:02:a1:b2:c3" in err
    assert "DNS prod.solaredge.com -> 10.77.0.1" in err


@pytest.mark.root
def test_other_hardware_gets_no_lease(link: Link, tmp_path: Path) -> None:
    _run("ip", "-n", link.client_ns, "link", "set", link.client_if, "address", OTHER_MAC.hex(":"))
    proc = _start_services(link)
    try:
        r = _udhcpc(link, tmp_path, tries=2)
        assert r.returncode != 0 and not (tmp_path / "lease.env").exists()
    finally:
        _stop(proc)
    proc = _start_services(link, "--any-mac")
    try:
        assert _udhcpc(link, tmp_path).returncode == 0
        assert _lease(tmp_path)["ip"] == "10.77.0.2"
    finally:
        _stop(proc)


@pytest.mark.root
def test_start_in_a_thread_and_errors(link: Link) -> None:
    """``start()`` (what semonitor -n calls) from inside the server namespace, via a child process."""
    code = f"""
import sys
from solarbridge.sources.solaredge import netservices as ns
try:
    ns.start("nosuch0")
except ns.NetServicesError as e:
    print("ERR", e)
svc = ns.start({link.server_if!r})
print("OK", svc.address)
try:
    ns.start({link.server_if!r})
except ns.NetServicesError as e:
    print("BUSY", e)
svc.close()
svc2 = ns.start({link.server_if!r})  # the ports are free again after close()
svc2.close()
print("DONE")
"""
    r = _run("ip", "netns", "exec", link.server_ns, sys.executable, "-c", code)
    lines = r.stdout.splitlines()
    assert lines[0] == "ERR no network interface 'nosuch0'"
    assert lines[1] == "OK 10.77.0.1"
    assert lines[2].startswith("BUSY cannot listen on UDP 0.0.0.0:67 on ")
    assert lines[3] == "DONE"
    # an interface without an IPv4 address
    r = _run("ip", "netns", "exec", link.client_ns, sys.executable, "-m",
             "solarbridge.sources.solaredge.netservices", link.client_if, check=False)
    assert r.returncode == 2 and "has no IPv4 address" in r.stderr


def test_time_is_used_for_expiry() -> None:
    srv = ns.DhcpServer("10.0.0.1", "255.255.255.0")
    out = srv.handle(dhcp_packet(1))
    assert out is not None and srv.leases[SE_MAC.hex(":")].expires > time.time()


@pytest.mark.root
def test_semonitor_n_end_to_end_with_the_simulated_inverter(link: Link, tmp_path: Path) -> None:
    """semonitor -n IFACE in one namespace; in the other the inverter takes a lease, resolves
    prod.solaredge.com through our DNS and posts telemetry to semonitor, which writes JSON."""
    semonitor = Path(sys.executable).parent / "semonitor"
    if not semonitor.exists():
        pytest.skip("semonitor is not installed")
    out = tmp_path / "inverter.json"
    mon = subprocess.Popen(["ip", "netns", "exec", link.server_ns, str(semonitor), "-n", link.server_if,
                            "-o", str(out), "-vv"], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    sim = None
    try:
        # the DHCP server is up when udhcpc gets its lease (udhcpc retries for a few seconds)
        r = _udhcpc(link, tmp_path, tries=8)
        assert r.returncode == 0, r.stderr
        etc = Path(f"/etc/netns/{link.client_ns}")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {_lease(tmp_path)['dns']}\n")
        sim = subprocess.Popen(["ip", "netns", "exec", link.client_ns, sys.executable, "-m", "solarbridge.cli.main",
                                "simulate", "solaredge", "--connect", "prod.solaredge.com:22222", "--count", "3",
                                "--interval", "0.2", "-q"], stderr=subprocess.PIPE, text=True)
        wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) >= 3, 30,
                 "semonitor to write 3 lines of telemetry", interval=0.05,
                 stop_if=lambda: mon.poll() is not None
                 and f"semonitor exited {mon.returncode}: {mon.stderr.read() if mon.stderr else ''}")
    finally:
        for p in (sim, mon):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.communicate()
    lines = out.read_bytes().splitlines()
    assert all(b'"inverters": {"7F104920"' in line for line in lines[:3])
