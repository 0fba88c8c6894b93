"""seextract on captures written by a real tcpdump on ``lo`` while an inverter and a server talk over
loopback TCP (127.0.0.3 -> 127.0.0.2), then the same capture re-ordered and with retransmissions."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from servers import wait_for
from solarbridge.sources.solaredge import extract as ex
from solarbridge.sources.solaredge.framing import Frame, StreamDecoder, encode
from support.paths import DATA as DATA_ROOT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump on lo needs root (CAP_NET_RAW)"),
    pytest.mark.skipif(not Path("/usr/bin/tcpdump").exists() and not Path("/usr/sbin/tcpdump").exists(),
                       reason="tcpdump is not installed (Debian package tcpdump)"),
]

BIN = Path(sys.executable).parent
SERVER_IP, INVERTER_IP = "127.0.0.2", "127.0.0.3"
INV_ID, MASTER = 0x7F104920, 0xFFFFFFFE




@contextlib.contextmanager
def tcpdump(path: Path, port: int) -> Iterator[None]:
    err = path.with_suffix(".stderr")
    with err.open("wb") as errf:
        proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-n", "-s", "0", "-w", str(path),
                                 f"tcp port {port}"], stdout=subprocess.DEVNULL, stderr=errf)
    try:
        wait_for(lambda: b"listening on" in err.read_bytes() or proc.poll() is not None, 15, "tcpdump to start")
        assert proc.poll() is None, err.read_text()
        yield
        # tcpdump lags behind on a busy machine and drops what it has not written at SIGINT:
        # wait until both FINs are in the file
        wait_for(lambda: _fins(path) >= 2, 30, "tcpdump to write the end of the connection")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _fins(path: Path) -> int:
    n = 0
    with contextlib.suppress(Exception), path.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.tcp.TCP):
                n += bool(eth.data.data.flags & dpkt.tcp.TH_FIN)
    return n


class Exchange:
    """A server on 127.0.0.2 that ACKs telemetry and answers GMT, and an inverter on 127.0.0.3."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind((SERVER_IP, 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.sent_by_server = bytearray()
        self.sent_by_inverter = bytearray()
        self.telemetry = 0

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        dec = StreamDecoder()
        with conn:
            while data := conn.recv(65536):
                for f in dec.feed(data):
                    if f.function == 0x0500:
                        reply = encode(f.reply(0x0080))
                    elif f.function == 0x0501:
                        reply = encode(f.reply(0x0580, int(time.time()).to_bytes(4, "little") + bytes(4)))
                    else:
                        continue
                    conn.sendall(reply)
                    self.sent_by_server += reply

    def run(self, frames: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        server = threading.Thread(target=self._serve, daemon=True)
        server.start()
        c = socket.socket()
        c.bind((INVERTER_IP, 0))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.connect((SERVER_IP, self.port))
        c.settimeout(10)
        dec = StreamDecoder()
        replies = 0
        with c:
            for i in range(frames):
                if i % 10 == 0:
                    f = encode(Frame(i, INV_ID, MASTER, 0x0501))
                else:
                    f = encode(Frame(i, INV_ID, MASTER, 0x0500, rng.randbytes(rng.randint(20, 3000))))
                    self.telemetry += 1
                # split writes, as a slow inverter's TCP stack does
                cuts = sorted(rng.sample(range(1, len(f)), min(2, len(f) - 1)))
                for a, b in zip([0, *cuts], [*cuts, len(f)], strict=True):
                    c.sendall(f[a:b])
                    time.sleep(0.001)
                self.sent_by_inverter += f
                while replies <= i:  # wait for the answer, like the inverter does
                    replies += len(dec.feed(c.recv(65536)))
            c.shutdown(socket.SHUT_WR)
        server.join(10)
        self.listener.close()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Exchange]:
    d = tmp_path_factory.mktemp("tcpdump")
    pcap = d / "lo.pcap"
    xch = Exchange()
    with tcpdump(pcap, xch.port):
        xch.run(60)
    return pcap, xch


def _seextract(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / "seextract"), *args], input=stdin, capture_output=True, timeout=60)


def test_seextract_command_on_a_tcpdump_capture(capture: tuple[Path, Exchange], tmp_path: Path) -> None:
    pcap, xch = capture
    out = tmp_path / "inverter.dat"
    r = _seextract("-s", SERVER_IP, "--direction", "to-server", "-o", str(out), "-v", str(pcap))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == bytes(xch.sent_by_inverter)
    assert b"connections 1" in r.stderr
    r = _seextract("-s", SERVER_IP, "--direction", "from-server", str(pcap))
    assert r.stdout == bytes(xch.sent_by_server)
    # both directions (the default): whole frames of each side, in order
    r = _seextract("-s", SERVER_IP, str(pcap))
    dec = StreamDecoder()
    frames = dec.feed(r.stdout)
    assert not dec.drops
    assert b"".join(encode(f) for f in frames if f.src == INV_ID) == bytes(xch.sent_by_inverter)
    assert b"".join(encode(f) for f in frames if f.src == MASTER) == bytes(xch.sent_by_server)
    # -a appends; stdin input
    r = _seextract("-a", "-o", str(out), "-s", SERVER_IP, "--direction", "to-server", stdin=pcap.read_bytes())
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == bytes(xch.sent_by_inverter) * 2


def test_port_fallback_when_the_server_name_does_not_resolve(capture: tuple[Path, Exchange]) -> None:
    pcap, xch = capture
    e = ex.make_extractor("prod.solaredge.com", ports=[xch.port], direction="to-server",
                          resolver=lambda name: (_ for _ in ()).throw(OSError(-2, "Name or service not known")))
    assert b"".join(ex.iter_streams(pcap, extractor=e)) == bytes(xch.sent_by_inverter)


def test_reordered_and_retransmitted_capture_built_from_the_real_one(capture: tuple[Path, Exchange],
                                                                      tmp_path: Path) -> None:
    """Shuffle the data segments of the tcpdump capture within a window and duplicate some, with dpkt."""
    pcap, xch = capture
    with pcap.open("rb") as f:
        packets = [(ts, bytes(b)) for ts, b in dpkt.pcap.Reader(f)]
    rng = random.Random(5)
    out: list[tuple[float, bytes]] = []
    window: list[tuple[float, bytes]] = []
    for p in packets:
        window.append(p)
        if rng.random() < 0.15:
            window.append(p)  # retransmission
        if len(window) >= 8:
            rng.shuffle(window)
            out += window
            window = []
    out += window
    crafted = tmp_path / "crafted.pcap"
    with crafted.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, b in out:
            w.writepkt(b, ts=ts)
    e = ex.make_extractor(SERVER_IP, direction="to-server")
    assert b"".join(ex.iter_streams(crafted, extractor=e)) == bytes(xch.sent_by_inverter)
    assert e.stats["out_of_order_segments"] > 0 and e.stats["retransmitted_segments"] > 0
    # pcapng version of the same, through the command
    ng = tmp_path / "crafted.pcapng"
    with ng.open("wb") as f:
        w2 = dpkt.pcapng.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, b in out:
            w2.writepkt(b, ts=ts)
    r = _seextract("-s", SERVER_IP, "--direction", "to-server", str(ng))
    assert r.returncode == 0 and r.stdout == bytes(xch.sent_by_inverter)


def test_semonitor_reads_the_extracted_stream(capture: tuple[Path, Exchange], tmp_path: Path) -> None:
    if not (BIN / "semonitor").exists():
        pytest.skip("semonitor (issue 5 part A) is not installed yet")
    try:
        import solarbridge.cli.semonitor  # noqa: F401
    except ImportError:
        pytest.skip("semonitor (issue 5 part A) is not in the tree yet")
    pcap, xch = capture
    dat = tmp_path / "x.dat"
    assert _seextract("-s", SERVER_IP, "-o", str(dat), str(pcap)).returncode == 0
    r = subprocess.run([str(BIN / "semonitor"), "-o", str(tmp_path / "x.json"), str(dat)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "x.json").read_bytes().splitlines()
    assert len(lines) == xch.telemetry


def test_extraction_streams_while_tcpdump_writes(tmp_path: Path) -> None:
    """``tcpdump -U -w - | seextract``: bytes come out while the capture is still running."""
    xch = Exchange()
    proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-n", "-s", "0", "-w", "-", f"tcp port {xch.port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        # tcpdump says "listening on" on stderr once the capture is running
        line = proc.stderr.readline()
        assert b"listening on" in line, line
        ext = subprocess.Popen([str(BIN / "seextract"), "-s", SERVER_IP, "--direction", "to-server",
                                "-o", str(tmp_path / "live.dat")], stdin=proc.stdout, stderr=subprocess.PIPE)
        proc.stdout.close()
        xch.run(15, seed=9)
        out = tmp_path / "live.dat"
        want = bytes(xch.sent_by_inverter)
        wait_for(lambda: out.exists() and out.stat().st_size >= len(want), 20, "seextract output")
        assert out.read_bytes() == want
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(10)
    assert ext.wait(20) == 0
    assert out.read_bytes() == want


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("encrypted", [False, True])
def test_capture_of_the_simulator_talking_to_semonitor(tmp_path: Path, encrypted: bool) -> None:
    """The inverter simulator posts telemetry (split writes; encrypted like old firmware) to semonitor in
    network mode while tcpdump records; semonitor on seextract's output writes the same JSON as live."""
    if not (BIN / "semonitor").exists():
        pytest.skip("semonitor is not installed")
    key = DATA_ROOT / "solaredge-tools" / "7f104920.key"
    port = _free_port(SERVER_IP)
    env = dict(os.environ, TZ="UTC")
    keyargs = ["-k", str(key)] if encrypted else []
    live = tmp_path / "live.json"
    pcap = tmp_path / "sim.pcap"
    mon = subprocess.Popen([str(BIN / "semonitor"), "-t", "n", "--listen", SERVER_IP, "-p", str(port), *keyargs,
                            "-o", str(live)], stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        with tcpdump(pcap, port):
            sim = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "simulate", "solaredge",
                                  "--connect", f"{SERVER_IP}:{port}", "--count", "4", "--interval", "0.1",
                                  "--split", "--optimizers", "3", "-q",
                                  *(["--encrypted", "--key", str(key)] if encrypted else [])],
                                 capture_output=True, timeout=60)
            assert sim.returncode == 0, sim.stderr
            wait_for(lambda: live.exists() and len(live.read_bytes().splitlines()) >= 4, 20, "semonitor's JSON")
    finally:
        mon.terminate()
        try:
            mon.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            mon.kill()
            mon.communicate()
    dat = tmp_path / "sim.dat"
    r = _seextract("-s", SERVER_IP, "-o", str(dat), str(pcap))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "replay.json"
    r = subprocess.run([str(BIN / "semonitor"), *keyargs, "-o", str(out), str(dat)], capture_output=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = live.read_bytes().splitlines()
    assert len(lines) == 4 and b'"optimizers": {"' in lines[0]
    assert out.read_bytes().splitlines() == lines
