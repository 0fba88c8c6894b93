"""semonitor on bad input: non-zero exits and one line naming the program, as seextract does (issue 17 item 7).

The exit codes where the original semonitor.py has one to compare with (a file it cannot open: 1;
a file of garbage: 0) are kept; docs/solaredge.md lists them.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from capture.builders import pcap_bytes, tcp

MON = [sys.executable, "-m", "solarbridge.cli.semonitor"]
SEX = [sys.executable, "-m", "solarbridge.cli.seextract"]
ENV = dict(os.environ, TZ="UTC")


def run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def _garbage(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    # random bytes without the SolarEdge magic, so no frame can be found in them
    p.write_bytes(random.Random(5).randbytes(5000).replace(b"\x12\x34", b"\x12\x00"))
    return p


def test_missing_capture_exits_2_like_seextract(tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent.pcap")
    ours = run([*MON, "-o", str(tmp_path / "o.json"), "--pcap", missing], tmp_path)
    theirs = run([*SEX, "-o", str(tmp_path / "o.dat"), missing], tmp_path)
    assert ours.returncode == theirs.returncode == 2
    assert ours.stderr.splitlines()[-1] == f"semonitor: error: no such capture file or directory: {missing}"
    assert theirs.stderr.splitlines()[-1].endswith(f"no such capture file or directory: {missing}")
    assert "Traceback" not in ours.stderr


def test_garbage_capture_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = _garbage(tmp_path, "garbage.pcap")
    ours = run([*MON, "-o", str(tmp_path / "o.json"), "--pcap", str(bad)], tmp_path)
    theirs = run([*SEX, "-o", str(tmp_path / "o.dat"), str(bad)], tmp_path)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr.splitlines() == [f"semonitor: {bad}: not a pcap or pcapng capture (starts with "
                                        f"{bad.read_bytes()[:4].hex()})"]
    assert f"seextract: {bad}: not a pcap or pcapng capture" in theirs.stderr


def test_capture_without_a_solaredge_connection_says_so(tmp_path: Path) -> None:
    p = tmp_path / "web.pcap"
    p.write_bytes(pcap_bytes([tcp("192.168.1.5", "93.184.216.34", 40000, 443, 1, data=b"hello")]))
    r = run([*MON, "-o", str(tmp_path / "o.json"), "--pcap", str(p)], tmp_path)
    assert r.returncode == 0  # as seextract: a valid capture, just nothing in it
    assert r.stderr.splitlines() == [f"semonitor: no TCP connection to prod.solaredge.com or port 22222 found in {p}"]


def test_garbage_recording_is_not_silent_and_keeps_the_originals_exit_0(tmp_path: Path) -> None:
    bad = _garbage(tmp_path, "garbage.dat")
    r = run([*MON, "-o", str(tmp_path / "o.json"), str(bad)], tmp_path)
    assert r.returncode == 0
    assert r.stderr.splitlines() == [f"semonitor: {bad}: no SolarEdge frames found in 5000 bytes"]
    assert (tmp_path / "o.json").read_bytes() == b""


def test_missing_recording_exits_1_as_the_original(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.dat"
    r = run([*MON, "-o", str(tmp_path / "o.json"), str(missing)], tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"semonitor: cannot open {missing}: No such file or directory"]
