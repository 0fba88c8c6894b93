"""Live capture on real interfaces: the simulator over loopback, and proof that capture never transmits."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from servers import async_wait_for, wait_for
from servers import free_port as _free_port
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.sources.sunsynk.simulator import DongleState, session_frames
from solarbridge.sources.sunsynk.source import SunsynkCaptureConfig, SunsynkCaptureSource
from support.paths import REPO
from support.sunsynk import fields

pytestmark = pytest.mark.root

SRC = str(REPO / "src")


def _simulator(port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "solarbridge.sources.sunsynk.simulator", "--server",
                             f"127.0.0.1:{port}", "--json", *extra], stdout=subprocess.PIPE, text=True)


def _sent(proc: subprocess.Popen[str]) -> list[dict]:
    out, _ = proc.communicate(timeout=30)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("extra", [("--layout", "292"), ("--layout", "302", "--split", "3", "--noise"),
                                   ("--coalesce", "--reconnect", "3")], ids=["292", "302-split-noise", "coalesce"])
def test_simulator_on_loopback_captured_on_lo(extra):
    port = _free_port()
    count = 6
    cfg = SunsynkCaptureConfig(type="sunsynk_capture", device="lo", filter=f"tcp port {port}", hold=0.5)
    src = SunsynkCaptureSource(cfg, Context.standalone("sunsynk", "source", "sunsynk_capture"))
    got: list[Reading] = []

    async def scenario() -> list[dict]:
        task = asyncio.create_task(src.run(got.append))
        await async_wait_for(lambda: src.capturing, 10, "the capture to start", interval=0.01,
                             stop_if=lambda: task.done() and f"the source ended: {task}")
        proc = _simulator(port, "--interval", "0.15", "--count", str(count), *extra)
        sent = await asyncio.to_thread(_sent, proc)
        await async_wait_for(lambda: len(got) >= len(sent), 15, lambda: f"{len(sent)} readings (got {len(got)}; "
                             f"pipeline: {src.pipeline.stats() if src.pipeline else None})", interval=0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sent

    sent = asyncio.run(scenario())
    assert len(sent) == count
    assert len(got) == count, src.pipeline.stats() if src.pipeline else None
    for r, s in zip(got, sent, strict=True):
        assert r.device_id == s["serial"]
        f = fields(r)
        for fid, value in s["values"].items():
            assert f[fid] == pytest.approx(value, abs=1e-6), fid
        assert r.metrics["pv_power_w"] == pytest.approx(s["values"]["pv_power_1"] + s["values"]["pv_power_2"])
    # energy counters went past the 16-bit limit and still decode
    assert got[0].metrics["grid_import_energy_total_wh"] < 65535 * 100 < got[-1].metrics["grid_import_energy_total_wh"]


_CAPTURE = textwrap.dedent("""
    import asyncio, json, sys
    sys.path.insert(0, {src!r})
    from solarbridge.plugin import Context
    from solarbridge.sources.sunsynk.source import SunsynkCaptureConfig, SunsynkCaptureSource
    cfg = SunsynkCaptureConfig(type="sunsynk_capture", device={dev!r}, filter="tcp port 51100", hold=0.3)
    src = SunsynkCaptureSource(cfg, Context.standalone("s", "source", "sunsynk_capture"))
    def emit(r):
        print(json.dumps({{"serial": r.device_id, "pv": r.metrics["pv_power_w"]}}), flush=True)
    async def main():
        t = asyncio.create_task(src.run(emit))
        while not src.capturing:
            await asyncio.sleep(0.01)
        print("READY", flush=True)
        await t
    asyncio.run(main())
""")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def test_capture_sends_nothing(tmp_path):
    """Reports injected into a veth reach the capture; the capture side's TX counters stay at zero."""
    tag = f"{os.getpid() % 100000}"
    ns, va, vb = f"sbcap{tag}", f"sbA{tag}", f"sbB{tag}"
    _ip("netns", "add", ns)
    proc = None
    try:
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", ns)
        for key in ("all", "default"):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"],
                           check=True, timeout=20)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{vb}.disable_ipv6=1"], check=True, timeout=20)
        _ip("netns", "exec", ns, "ip", "link", "set", va, "up")
        _ip("link", "set", vb, "up")

        def counter(name: str) -> int:
            out = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{va}/statistics/{name}"],
                                 check=True, capture_output=True, text=True, timeout=20).stdout
            return int(out)

        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _CAPTURE.format(src=SRC, dev=va)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        tx0, rx0 = counter("tx_packets"), counter("rx_packets")

        state = DongleState(serial="NOTRANSMIT", seed=5)
        frames = list(session_frames(state, reports=4, split=2, retransmit=0.5, start=time.time()))
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as inj:
            inj.bind((vb, 0))
            for _, frame in frames:
                inj.send(frame)
        lines = []
        wait_for(lambda: lines.append(json.loads(proc.stdout.readline())) or len(lines) >= 4, 15,
                 lambda: f"4 readings from the capture (got {lines})", interval=0)  # readline blocks for each
        assert [x["serial"] for x in lines] == ["NOTRANSMIT"] * 4
        assert counter("rx_packets") - rx0 >= len(frames)
        assert counter("tx_packets") == tx0 == 0
        assert counter("tx_bytes") == 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "link", "del", vb], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


@pytest.mark.servers
def test_live_cli_to_mosquitto_and_victoriametrics(tmp_path, victoria, mosquitto):
    """simulator -> lo -> sunsynk-capture (live, BPF on the port) -> real mosquitto and VictoriaMetrics."""
    import signal

    import paho.mqtt.client as mqtt

    port = _free_port()
    cfg = tmp_path / "capture.toml"
    cfg.write_text(f"""
state_dir = "{tmp_path}/state"
[pcap]
device = "lo"
filter = "tcp port {port}"
timezone = "Europe/London"
[[influxdb2]]
host = "{victoria.url}"
org = "home"
bucket = "solar"
token = "t0ken"
[[mqtt]]
url = "{mosquitto.url}"
""")
    cfg.chmod(0o600)
    got: dict[str, bytes] = {}
    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cli.on_message = lambda c, u, m: got.__setitem__(m.topic, m.payload)
    cli.connect("127.0.0.1", mosquitto.port)
    cli.subscribe("#")
    cli.loop_start()
    cap = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.sunsynk_capture", str(cfg), "-v"],
                           stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stderr is not None
        log: list[str] = []

        def capturing() -> bool:  # blocks for one line of the log
            line = cap.stderr.readline()
            assert line, f"sunsynk-capture ended {cap.poll()}: {log}"
            log.append(line)
            return "capturing on lo" in line

        wait_for(capturing, 20, lambda: f"sunsynk-capture to open its socket (log: {log[-10:]})", interval=0)
        import threading

        threading.Thread(target=cap.stderr.read, daemon=True).start()  # keep the pipe drained
        sent = _sent(_simulator(port, "--interval", "0.1", "--count", "3", "--split", "2",
                                "--clock", "2024-06-21T09:00:00"))
        serial = sent[0]["serial"]
        uid = f"sunsniff_{serial}_battery_soc"
        wait_for(lambda: f"homeassistant/sensor/{uid}/state" in got, 15,
                 lambda: f"the state of {uid} on the broker (topics: {sorted(got)[:20]})", interval=0.05)
        disc = json.loads(got[f"homeassistant/sensor/{uid}/config"])
        assert disc["expire_after"] == 600 and disc["name"] == "Battery SOC"
        assert disc["availability"], disc
        assert float(got[f"homeassistant/sensor/{uid}/state"]) in {s["values"]["battery_soc"] for s in sent}
        avail_topics = [a["topic"] for a in disc["availability"]]
        wait_for(lambda: all(got.get(t) == b"online" for t in avail_topics), 10,
                 lambda: f"online on every availability topic ({ {t: got.get(t) for t in avail_topics} })",
                 interval=0.05)

        series = victoria.wait_series('{__name__="inverter_value",name="SOC"}', lambda s: len(s[0]["values"]) == 3,
                                      timeout=15)
        assert series[0]["metric"]["serial"] == serial
        assert series[0]["values"] == [s["values"]["battery_soc"] for s in sent]
        # the dongle clock (2024-06-21 09:00 local, BST) is the timestamp, 5 minutes apart
        assert series[0]["timestamps"][0] == 1718956800000 and series[0]["timestamps"][1] == 1718957100000
    finally:
        cap.send_signal(signal.SIGTERM)
        try:
            assert cap.wait(timeout=20) == 0
        finally:
            if cap.poll() is None:
                cap.kill()
            cli.loop_stop()
            cli.disconnect()
