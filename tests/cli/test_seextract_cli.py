"""The seextract command: options, output files, errors, the offline fallback, and -f following a
directory of rotating captures; plus semonitor --pcap on the same captures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from capture.builders import SRV, pcap_bytes
from servers import wait_for
from solarbridge.cli import seextract
from solarbridge.sources.solaredge import extract as ex
from solarbridge.sources.solaredge.framing import StreamDecoder
from support.seextract import Conversation, ack, other_traffic, recorded_frames, telemetry

BIN = Path(sys.executable).parent


def _offline(name: str) -> list[str]:
    raise OSError(-3, "Temporary failure in name resolution")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution fails as it does without network (and tests never query DNS)."""
    monkeypatch.setattr(ex, "_system_resolve", _offline)




@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, Conversation]:
    conv = Conversation(srv="198.51.100.7")
    for i in range(10):
        conv.send(telemetry(i), pieces=2)
        conv.send(telemetry(100 + i, 0)[:22], from_server=True)
    conv.close()
    other = Conversation(srv="93.184.216.34", dport=443, sport=50001)
    other.send(b"unrelated" * 100)
    p = tmp_path / "cap.pcap"
    p.write_bytes(pcap_bytes(other.packets + conv.packets))
    return p, conv


def test_default_server_offline_falls_back_to_port_22222(offline: None, capture: tuple[Path, Conversation],
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    pcap, conv = capture
    out = tmp_path / "out.dat"
    assert seextract.main(["-o", str(out), "-v", str(pcap)]) == 0
    dec = StreamDecoder()
    frames = dec.feed(out.read_bytes())
    assert not dec.drops and len(frames) == 20
    assert "connections 1" in capsys.readouterr().err
    assert "cannot resolve server prod.solaredge.com" in caplog.text
    assert out.stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.dat")]  # temp file renamed away


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_server_address_direction_append_and_stdout(capture: tuple[Path, Conversation], tmp_path: Path) -> None:
    pcap, conv = capture
    out = tmp_path / "o.dat"
    args = ["-s", "198.51.100.7", "--direction", "to-server"]
    assert seextract.main([*args, "-o", str(out), str(pcap)]) == 0
    assert seextract.main([*args, "-a", "-o", str(out), str(pcap)]) == 0
    assert out.read_bytes() == bytes(conv.to_server) * 2
    r = subprocess.run([str(BIN / "seextract"), "-s", "198.51.100.7", "--direction", "from-server", str(pcap)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == bytes(conv.from_server)
    # an address that is not in the capture: nothing, with a hint on stderr
    r = subprocess.run([str(BIN / "seextract"), "-s", "203.0.113.99", str(pcap)], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b""
    assert b"no TCP connection to 203.0.113.99 found" in r.stderr


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent.pcap"], "no such capture file or directory: /nonexistent.pcap"),
    (["-a", "x.pcap"], "-a needs -o outfile"),
    (["-s", " ", "x.pcap"], "-s: the server name or address must not be empty"),
    (["--port", "70000", "x.pcap"], "port must be a TCP port 1..65535 (got '70000')"),
    (["--poll", "0", "x.pcap"], "must be a number of seconds 0.01..3600"),
    (["--direction", "up", "x.pcap"], "invalid choice: 'up'"),
])
def test_option_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        seextract.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_not_a_capture_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    r = subprocess.run([str(BIN / "seextract"), "-s", SRV, "-o", str(tmp_path / "o"), str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not a pcap or pcapng capture" in r.stderr
    assert not (tmp_path / "o").exists()


def test_follow_a_directory_and_move_to_newer_captures(tmp_path: Path) -> None:
    """tcpdump -G style rotation: the connection goes on in the next file; seextract -f follows it."""
    conv = Conversation(srv="198.51.100.7")
    for i in range(30):
        conv.send(telemetry(i, 200), pieces=2)
    pk = conv.packets
    d = tmp_path / "pcap"
    d.mkdir()
    out = tmp_path / "live.dat"
    first = d / "20240101000000.pcap"
    first.write_bytes(pcap_bytes(pk[:10]))
    proc = subprocess.Popen([str(BIN / "seextract"), "-f", "--poll", "0.05", "-s", "198.51.100.7",
                             "--direction", "to-server", "-o", str(out), str(d)], stderr=subprocess.PIPE)
    try:
        body = pcap_bytes(pk)[24:]  # records only
        records = _records(body)
        want = bytes(conv.to_server)

        def extracted_through(n_packets: int) -> int:
            """Stream bytes in complete frames carried by the first n packets."""
            dec = StreamDecoder()
            got = dec.feed(b"".join(ex.decode_packet(1, p).payload for p in pk[3:n_packets]))  # type: ignore[union-attr]
            return sum(22 + len(f.payload) for f in got)

        wait_for(lambda: out.exists() and out.stat().st_size == extracted_through(10), 20, "the first file")
        with first.open("ab") as f:  # the capture grows
            f.write(b"".join(records[10:40]))
            f.flush()
        wait_for(lambda: out.stat().st_size == extracted_through(40), 20, "the grown file")
        # the writer appends a last few packets and rotates to a new file
        with first.open("ab") as f:
            f.write(b"".join(records[40:45]))
        second = d / "20240101000100.pcap"
        second.write_bytes(pcap_bytes(pk[45:50]))
        st = first.stat()
        os.utime(second, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        wait_for(lambda: out.stat().st_size == extracted_through(50), 20, "the rotated file")
        with second.open("ab") as f:
            f.write(b"".join(records[50:]))
        wait_for(lambda: out.stat().st_size == len(want), 20, "the end of the stream")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.read_bytes() == want


def _records(body: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(body):
        n = int.from_bytes(body[pos + 8:pos + 12], "little")
        out.append(body[pos:pos + 16 + n])
        pos += 16 + n
    return out


def test_iter_streams_follow_stops_when_asked(tmp_path: Path) -> None:
    conv = Conversation(srv="198.51.100.7")
    conv.send(telemetry(1))
    p = tmp_path / "a.pcap"
    p.write_bytes(pcap_bytes(conv.packets))
    stop = threading.Event()
    got: list[bytes] = []

    def run() -> None:
        for chunk in ex.iter_streams(p, "198.51.100.7", follow=True, poll_interval=0.02, should_stop=stop.is_set):
            got.append(chunk)

    t = threading.Thread(target=run)
    t.start()
    wait_for(lambda: bool(got), 10, "output")
    stop.set()
    t.join(10)
    assert not t.is_alive() and b"".join(got) == telemetry(1)


def test_semonitor_pcap_option(tmp_path: Path) -> None:
    """semonitor --pcap FILE decodes a capture directly (5A's option calling iter_streams), giving the
    same JSON as semonitor on seextract's output; the capture carries a real recorded 0x0500 frame."""
    if not (BIN / "semonitor").exists():
        pytest.skip("semonitor is not installed")
    meter = recorded_frames()["i136_0500_meter0022"]
    conv = Conversation()
    for i in range(5):
        conv.send(meter, pieces=3)
        conv.send(ack(i), from_server=True)
    conv.close()
    pcap = tmp_path / "meter.pcap"
    pcap.write_bytes(pcap_bytes(other_traffic() + conv.packets))
    env = dict(os.environ, TZ="UTC")

    def semonitor(*args: str) -> list[bytes]:
        out = tmp_path / "x.json"
        r = subprocess.run([str(BIN / "semonitor"), *args, "-o", str(out)], capture_output=True,
                           timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return out.read_bytes().splitlines()

    lines = semonitor("--pcap", str(pcap))
    assert len(lines) == 5
    assert all(b'"9_PVProduction"' in line and b'"2019-07-18"' in line for line in lines)
    dat = tmp_path / "meter.dat"
    assert seextract.main(["-s", SRV, "-o", str(dat), str(pcap)]) == 0
    assert semonitor(str(dat)) == lines
