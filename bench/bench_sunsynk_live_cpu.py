"""Benchmark: CPU of a live sunsynk capture per 1,000 packets/s of unrelated traffic (filter on). Needs root.

Starts the capture source in a child process on ``lo`` with the filter ``tcp port <P>`` (a port nothing uses,
so all traffic is unrelated), sends UDP and TCP packets at a fixed rate to other loopback ports, and reads the
child's CPU time (user + system) from /proc. With the BPF filter in the kernel, unrelated packets are dropped
before they reach the process, so its cost should stay near its idle cost.

    sudo .venv/bin/python bench/bench_sunsynk_live_cpu.py [--seconds 10] [--rates 0,1000,10000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent("""
    import asyncio, sys
    from solarbridge.plugin import Context
    from solarbridge.sources.sunsynk.source import SunsynkCaptureConfig, SunsynkCaptureSource
    flt = None if sys.argv[1] == "none" else "tcp port " + sys.argv[1]
    cfg = SunsynkCaptureConfig(type="sunsynk_capture", device="lo", filter=flt)
    src = SunsynkCaptureSource(cfg, Context.standalone("bench", "source", "sunsynk_capture"))
    async def main():
        t = asyncio.create_task(src.run(lambda r: None))
        while not src.capturing:
            await asyncio.sleep(0.01)
        print("READY", flush=True)
        await t
    asyncio.run(main())
""")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(rate: int, seconds: float) -> int:
    """Half UDP datagrams, half small TCP writes (TCP_NODELAY) to a local sink; returns packets sent."""
    if rate == 0:
        time.sleep(seconds)
        return 0
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_port = free_port(socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", udp_port))
    rx.setblocking(False)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    tcp = socket.create_connection(srv.getsockname())
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer, _ = srv.accept()
    peer.setblocking(False)
    payload = bytes(200)
    n = 0
    start = time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate)
        while n < due:
            if n % 2:
                udp.sendto(payload, ("127.0.0.1", udp_port))
            else:
                tcp.send(payload)
            n += 1
        for s in (rx, peer):
            try:
                while s.recv(65536):
                    pass
            except BlockingIOError:
                pass
        time.sleep(0.001)
    for s in (udp, rx, tcp, peer, srv):
        s.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="0,1000,10000", help="packets/s to send, comma separated")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (or CAP_NET_RAW) for the capture socket")
    for label, arg in (("filter 'tcp port <unused>'", str(free_port())),
                       ("no user filter (every TCP packet reaches Python)", "none")):
        print(label)
        child = subprocess.Popen([sys.executable, "-c", CHILD, arg], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "READY"
            for rate in (int(r) for r in args.rates.split(",")):
                c0, t0 = cpu_seconds(child.pid), time.monotonic()
                sent = send(rate, args.seconds)
                c1, t1 = cpu_seconds(child.pid), time.monotonic()
                pct = 100 * (c1 - c0) / (t1 - t0)
                per_k = pct / (rate / 1000) if rate else float("nan")
                print(f"  unrelated traffic {sent / (t1 - t0):8,.0f} pkt/s: capture CPU {pct:5.2f}% of one core"
                      + (f" ({per_k:.3f}% per 1,000 pkt/s)" if rate else " (idle)"))
        finally:
            child.terminate()
            child.wait(timeout=10)

if __name__ == "__main__":
    main()
