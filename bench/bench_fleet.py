"""A fleet on one machine: simulated GivEnergy inverters, N identical workers, mosquitto and VictoriaMetrics.

    python bench/bench_fleet.py [--devices 2000] [--workers 4] [--interval 10] [--duration 300]
                                [--sim-procs 4] [--outage 30] [--no-kill]

What runs (all on loopback, in a temp dir, stopped at the end):

- ``solarbridge simulate givenergy --count`` in ``--sim-procs`` processes (one TCP port per inverter);
- ``--workers`` ``solarbridge run`` processes with ONE config (an inventory of every inverter, an ``mqtt``
  sink and an ``influxdb2`` sink) that differ only in ``SOLARBRIDGE_SHARD=k/n`` and
  ``SOLARBRIDGE_STATE_DIR``;
- mosquitto, and victoria-metrics behind a small recording proxy: the workers write to
  ``http://proxy/influx/api/v2/write`` (the path prefix single-node VictoriaMetrics serves), and the proxy
  notes when VictoriaMetrics acknowledged each line, which gives poll -> stored latency.

Figures, over the measurement window (after every device has been seen once):

- completeness: samples of ``inverter_battery_soc_pct`` stored in VictoriaMetrics with a timestamp in the
  window / devices x window / interval;
- CPU (% of one core) and RSS of each worker, and of the simulators, mosquitto and VictoriaMetrics;
- latency from the poll (the reading's timestamp) to stored (VictoriaMetrics' 2xx for the line) and to
  delivered on MQTT (a subscriber's receipt of the state message), p50 and p99;
- per-device cost and the devices one worker holds at 80 % of a core.

Then worker 0 is killed with SIGKILL, restarted after ``--outage`` seconds, and the script reports the gap
in its devices' series and whether every reading it had read before the kill (seen on MQTT) is in
VictoriaMetrics (the spool sends what was not yet acknowledged).

This is a benchmark, not a test: it prints figures and asserts nothing. The machine may be shared;
the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import math
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402

import servers  # noqa: E402
from solarbridge.fleet.shard import owner  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
METRIC = "inverter_battery_soc_pct"
_LP_TAIL = re.compile(rb"device_id=([^, ]+)[^ ]* .* (\d+)$")


def cpu_seconds(pid: int) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / CLK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} ({os.cpu_count()} cores)"


# ----------------------------------------------------------------------------- recording proxy


class Proxy:
    """HTTP/1.1 pass-through to VictoriaMetrics that records, per acknowledged line, (device, ts_ns, ack time)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.acked: list[tuple[bytes, int, float]] = []
        self.requests = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()

            async def main() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()
                async with self._server:
                    await self._server.serve_forever()

            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                self._loop.run_until_complete(main())

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, reply = await asyncio.to_thread(self._forward, method, target, headers, body)
                if 200 <= status < 300:
                    now = time.time()
                    raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
                    for line in raw.split(b"\n"):
                        m = _LP_TAIL.search(line)
                        if m:
                            self.acked.append((m.group(1), int(m.group(2)), now))
                self.requests += 1
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(reply)}\r\n\r\n".encode() + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        keep = {k: v for k, v in headers.items() if k in ("content-type", "content-encoding", "authorization")}
        req = urllib.request.Request(f"http://127.0.0.1:{self.upstream}{target}", data=body, method=method,
                                     headers=keep)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


# ----------------------------------------------------------------------------- MQTT watcher


class Watcher:
    """Subscribes to every device's state topic (QoS 0) and notes (device, reading timestamp, receipt time)."""

    def __init__(self, port: int) -> None:
        #: (device, reading time s, receipt time s, reading time ms)
        self.seen: list[tuple[str, float, float, int]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("solarbridge/+/state", 0)
        self.client.on_message = self._msg
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _msg(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        if msg.retain:
            return
        try:
            ts = datetime.fromisoformat(json.loads(msg.payload)["timestamp"])
        except (ValueError, KeyError, TypeError):
            return
        ms = (ts - EPOCH) // timedelta(milliseconds=1)  # exact, as VictoriaMetrics keeps it
        device = msg.topic.split("/")[1]
        if device.startswith("site"):  # the sites' derived readings are not polls
            return
        with self.lock:
            self.seen.append((device, ms / 1000, now, ms))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ----------------------------------------------------------------------------- VictoriaMetrics reads


def vm_samples(vm: servers.Victoria, start: float, end: float) -> dict[str, list[int]]:
    """device -> sample timestamps (ms) of METRIC within [start, end) (seconds)."""
    vm.flush()
    q = urllib.parse.urlencode({"match[]": METRIC, "start": f"{start:.3f}", "end": f"{end:.3f}"}).encode()
    out: dict[str, list[int]] = {}
    with urllib.request.urlopen(f"{vm.url}/api/v1/export", data=q, timeout=120) as r:
        for line in r.read().decode().splitlines():
            if not line.strip():
                continue
            s = json.loads(line)
            ts = [t for t in s["timestamps"] if start * 1000 <= t < end * 1000]
            out.setdefault(s["metric"].get("device_id", "?"), []).extend(ts)
    return out


# ----------------------------------------------------------------------------- the run


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def main() -> int:  # noqa: C901, PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds")
    ap.add_argument("--duration", type=float, default=300.0, help="measurement window, seconds")
    ap.add_argument("--sim-procs", type=int, default=4, help="simulator processes (<= 999 inverters each)")
    ap.add_argument("--outage", type=float, default=30.0, help="seconds worker 0 stays dead after SIGKILL")
    ap.add_argument("--no-kill", action="store_true", help="skip the kill -9 part")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    per_sim = math.ceil(a.devices / a.sim_procs)
    if per_sim > 999:
        ap.error("--sim-procs too small: at most 999 inverters per simulator process")
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    mosq = servers.Mosquitto(name="mosquitto", dir=tmp / "mosquitto")
    vm = servers.Victoria(name="victoria", dir=tmp / "victoria")
    (tmp / "mosquitto").mkdir()
    (tmp / "victoria").mkdir()
    proxy: Proxy | None = None
    watcher: Watcher | None = None
    print(f"bench_fleet: {a.devices} GivEnergy inverters, {a.workers} workers, poll every {a.interval:g} s,"
          f" window {a.duration:g} s; {load()}", flush=True)
    try:
        mosq.start()
        vm.start()
        proxy = Proxy(vm.http_port)
        proxy.start()
        # ---------------------------------------------------------------- simulators
        devices: list[tuple[str, int]] = []
        for p in range(a.sim_procs):
            n = min(per_sim, a.devices - p * per_sim)
            if n <= 0:
                break
            log = tmp / f"sim{p}.log"
            procs[f"sim{p}"] = spawn(["simulate", "givenergy", "--port", "0", "--count", str(n), "--batteries", "1",
                                      "--tick", "5", "--serial", f"F{p:02d}FLT0000"], log)
        for p in range(a.sim_procs):
            log = tmp / f"sim{p}.log"
            if f"sim{p}" not in procs:
                break
            n = min(per_sim, a.devices - p * per_sim)
            found = servers.wait_for(
                lambda log=log, n=n: (f := re.findall(r"simulator (\S+) .* listening on 127\.0\.0\.1:(\d+)",
                                                      log.read_text())) and len(f) >= n and f, 120,
                interval=0.5, what=f"simulator {p}")
            devices += [(s, int(port)) for s, port in found]  # type: ignore[union-attr]
        serials = {s for s, _ in devices}
        assert len(serials) == a.devices, "simulator serials are not unique"
        # ---------------------------------------------------------------- one config for every worker
        # buildings of 4 inverters: each building is a site, published as site:<label> and sharded whole
        site_of = {serial: f"site-{i // 4}" for i, (serial, _port) in enumerate(devices)}
        (tmp / "fleet.csv").write_text("family,host,port,serial,site\n" + "".join(
            f"givenergy,127.0.0.1,{port},{serial},{site_of[serial]}\n" for serial, port in devices))

        def shard_of(serial: str) -> int:  # what the workers hash: the row's site (inventory.shard_key)
            return owner(f"site:{site_of[serial]}", a.workers)
        cfg = tmp / "fleet.toml"
        cfg.write_text(f"""[daemon]
history = false
[inventory]
file = "fleet.csv"
[inventory.defaults.givenergy]
poll_interval = {a.interval}
[[sinks]]
type = "mqtt"
url = "{mosq.url}"
per_metric_topics = false
[[sinks]]
type = "influxdb2"
host = "http://127.0.0.1:{proxy.port}/influx"
bucket = "fleet"
""")
        cfg.chmod(0o600)

        def start_worker(k: int) -> None:
            procs[f"w{k}"] = spawn(["run", "-v", "-c", str(cfg)], tmp / f"w{k}.log",
                                   {"SOLARBRIDGE_SHARD": f"{k}/{a.workers}",
                                    "SOLARBRIDGE_STATE_DIR": str(tmp / f"w{k}")})

        watcher = Watcher(mosq.port)
        for k in range(a.workers):
            start_worker(k)
        t_start = time.time()

        def all_seen() -> bool:
            with watcher.lock:
                return len({x[0] for x in watcher.seen}) >= a.devices

        servers.wait_for(all_seen, 180, interval=1.0, what="every device's first reading on MQTT")
        print(f"every device read once after {time.time() - t_start:.1f} s", flush=True)
        # window: whole seconds, starting one interval after the last first reading
        time.sleep(a.interval)
        w0 = math.ceil(time.time())
        w1 = w0 + a.duration
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        extra = {"mosquitto": mosq.pid, "victoria-metrics": vm.pid}
        cpu0.update({name: cpu_seconds(pid) for name, pid in extra.items()})
        load_start = load()
        time.sleep(max(0.0, w1 - time.time()))
        cpu1 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        cpu1.update({name: cpu_seconds(pid) for name, pid in extra.items()})
        rss = {name: rss_mb(p.pid) for name, p in procs.items()}
        rss.update({name: rss_mb(pid) for name, pid in extra.items()})
        load_end = load()
        time.sleep(a.interval + 3)  # let the last polls of the window be stored
        stored = vm_samples(vm, w0, w1)
        # ---------------------------------------------------------------- figures
        # one poll per interval slot of the window: a slot with a stored reading counts once (a poll's
        # timestamp is its completion time, which wanders within the slot on a loaded machine)
        per_dev_expected = int(a.duration / a.interval)
        slots = {s: len({int((t / 1000 - w0) // a.interval) for t in stored.get(s, [])}) for s in serials}
        expected = a.devices * per_dev_expected
        got_slots = sum(min(n, per_dev_expected) for n in slots.values())
        got = sum(min(len(stored.get(s, [])), per_dev_expected) for s in serials)
        short = sorted((n, s) for s, n in slots.items())[:3]
        print(f"\nwindow {a.duration:g} s; {load_start} at start, {load_end} at end")
        print(f"completeness: {got} of {expected:.0f} readings stored = {100 * got / expected:.3f} %"
              f" (at most {per_dev_expected} per device); {got_slots} of the {expected:.0f} {a.interval:g}-s slots"
              f" hold a reading = {100 * got_slots / expected:.3f} % (devices with fewest:"
              f" {', '.join(f'{s} {n}/{per_dev_expected:g}' for n, s in short)})")
        owners: dict[int, int] = {}
        for s, _port in devices:
            k = shard_of(s)
            owners[k] = owners.get(k, 0) + 1
        worker_cpu = []
        for k in range(a.workers):
            name = f"w{k}"
            c = (cpu1[name] - cpu0[name]) / a.duration
            worker_cpu.append((c, owners.get(k, 0)))
            print(f"worker {k}/{a.workers}: {owners.get(k, 0)} devices, CPU {100 * c:.1f} % of a core,"
                  f" RSS {rss[name]:.0f} MB")
        sims = [n for n in cpu1 if n.startswith("sim")]
        print(f"simulators ({len(sims)} processes): CPU {100 * sum(cpu1[n] - cpu0[n] for n in sims) / a.duration:.1f}"
              f" % of a core, RSS {sum(rss[n] for n in sims):.0f} MB")
        for name in extra:
            print(f"{name}: CPU {100 * (cpu1[name] - cpu0[name]) / a.duration:.1f} % of a core,"
                  f" RSS {rss[name]:.0f} MB")
        per_dev = sum(c for c, _ in worker_cpu) / max(1, sum(n for _, n in worker_cpu))
        print(f"per-device cost: {100 * per_dev:.4f} % of a core at one poll per {a.interval:g} s"
              f" -> {0.8 / per_dev:,.0f} devices per worker at 80 % of a core")
        lat_vm = [ack - ts / 1e9 for dev, ts, ack in proxy.acked if w0 <= ts / 1e9 < w1]
        first_rx: dict[tuple[str, int], float] = {}
        with watcher.lock:
            for d, ts, rx, ms in watcher.seen:
                if w0 <= ts < w1 and (d, ms) not in first_rx:  # later copies are heartbeat re-publishes
                    first_rx[(d, ms)] = rx - ts
        lat_mq = list(first_rx.values())
        read = {(d, ms) for d, ms in first_rx}
        in_vm = {(d, t) for d, v in stored.items() for t in v}
        print(f"delivery: {len(read)} readings made in the window (seen on MQTT), {len(read & in_vm)} of them"
              f" stored in VictoriaMetrics ({100 * len(read & in_vm) / max(1, len(read)):.3f} %);"
              f" readings made / expected: {100 * len(read) / expected:.3f} %")
        print(f"poll -> stored in VictoriaMetrics: p50 {1000 * pct(lat_vm, 0.5):.0f} ms,"
              f" p99 {1000 * pct(lat_vm, 0.99):.0f} ms ({len(lat_vm)} readings)")
        print(f"poll -> delivered on MQTT: p50 {1000 * pct(lat_mq, 0.5):.0f} ms,"
              f" p99 {1000 * pct(lat_mq, 0.99):.0f} ms ({len(lat_mq)} readings)", flush=True)
        if a.no_kill:
            return 0
        # ---------------------------------------------------------------- kill -9 worker 0, restart after outage
        mine = {s for s, _ in devices if shard_of(s) == 0}
        t_kill = time.time()
        os.kill(procs["w0"].pid, signal.SIGKILL)
        procs["w0"].wait(10)
        with watcher.lock:
            read_before = {(d, ms) for d, ts, _, ms in watcher.seen if d in mine and t_kill - 120 <= ts <= t_kill}
        spool_db = tmp / "w0" / "spool" / "influxdb2.influx.sqlite"
        con = sqlite3.connect(spool_db)
        try:
            on_disk = con.execute("SELECT COALESCE(SUM(points), 0) FROM spool").fetchone()[0]
        finally:
            con.close()
        print(f"\nkill -9 worker 0 ({len(mine)} devices); {on_disk} point(s) in its spool, not yet acknowledged;"
              f" {load()}", flush=True)
        time.sleep(a.outage)
        start_worker(0)
        t_restart = time.time()

        def back() -> bool:
            with watcher.lock:
                return len({x[0] for x in watcher.seen if x[0] in mine and x[1] > t_restart}) >= len(mine)

        servers.wait_for(back, 120, interval=0.5, what="worker 0's devices back")
        t_back = time.time()
        print(f"worker 0 restarted after {t_restart - t_kill:.1f} s; all its devices read again"
              f" {t_back - t_restart:.1f} s after the restart", flush=True)
        time.sleep(a.interval + 3)
        after = vm_samples(vm, t_kill - 120, time.time())
        gaps = []
        for s in mine:
            ts = sorted(t / 1000 for t in after.get(s, []))
            spans = [b - x for x, b in zip(ts, ts[1:], strict=False) if x <= t_restart and b >= t_kill]
            if spans:
                gaps.append(max(spans))
        missed = [max(0, round(g / a.interval) - 1) for g in gaps]
        print(f"gap in worker 0's devices: median {statistics.median(gaps):.1f} s, max {max(gaps):.1f} s"
              f" = {statistics.median(missed):.0f}-{max(missed)} missed poll(s) per device"
              f" (kill -> restart {t_restart - t_kill:.1f} s)")
        vm_now = {(d, t) for d, v in after.items() for t in v}
        lost = read_before - vm_now
        print(f"readings worker 0 had read (seen on MQTT) in the 120 s before the kill: {len(read_before)};"
              f" missing from VictoriaMetrics after the restart: {len(lost)}"
              + (f" (e.g. {sorted(lost)[:3]})" if lost else ""))
        return 0
    finally:
        if watcher is not None:
            watcher.close()
        for p in procs.values():
            stop(p)
        if proxy is not None:
            proxy.stop()
        vm.stop()
        mosq.stop()
        if not a.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    sys.exit(main())
