"""sekey: semonitor's answers to parameters 0x0239..0x023c in, the key file out.

The reference key file (jbuehl/solaredge test/keys/7f104920.key) fixes the output format; the end
to end test reads the key from the inverter simulator over a pty pair with semonitor -c."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers import wait_for
from solarbridge.cli import sekey
from solarbridge.sources.solaredge import keyfile
from solarbridge.sources.solaredge.crypto import parse_key, read_key_file
from solarbridge.sources.solaredge.jsonout import command_line
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "solaredge-tools"
KEY_FILE = DATA / "7f104920.key"
BIN = Path(sys.executable).parent


def answers(key: bytes, *, seq: int = 100) -> bytes:
    """What semonitor -c 12,H239/12,H23a/12,H23b/12,H23c writes for an inverter with this key."""
    return b"".join(command_line(0x12, 0x90, seq + i, {"value": v, "type": 0})
                    for i, v in enumerate(struct.unpack("<4L", key)))


def test_round_trip_matches_the_reference_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = KEY_FILE.read_bytes()
    src = tmp_path / "key.json"
    src.write_bytes(answers(bytes.fromhex(ref.decode())))
    out = tmp_path / "7f104920.key"
    assert sekey.main(["-o", str(out), str(src)]) == 0
    assert out.read_bytes() == ref  # 32 lowercase hex characters, no newline
    assert out.stat().st_mode & 0o777 == 0o600
    assert read_key_file(out) == bytes.fromhex(ref.decode())
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "0x0239 = 0x232599e1 (589666785)" and len(printed) == 4


def test_key_to_stdout_and_from_stdin(tmp_path: Path) -> None:
    key = bytes(range(16))
    r = subprocess.run([str(BIN / "sekey")], input=answers(key), capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == key.hex().encode() + b"\n"


def test_telemetry_lines_and_blank_lines_are_skipped() -> None:
    key = bytes(range(100, 116))
    text = b'{"events": {}, "inverters": {}, "optimizers": {}}\n\n' + answers(key)
    assert keyfile.key_hex(keyfile.values_from_lines(text.decode().splitlines())) == key.hex()


@pytest.mark.parametrize("lines, message", [
    ([], "expected the 4 answers to -c 12,H239/12,H23a/12,H23b/12,H23c, found 0"),
    (["not json"], "line 1: not a JSON line"),
    (["[1, 2]"], "line 1: expected a JSON object"),
    ([command_line(0x12, 0x81, 1, "").decode()], "line 1: answer 1 (parameter 0x0239): the inverter answered "
                                                  "0x0081 PROT_RESP_NACK instead of a parameter value (the key can "
                                                  "only be read over RS232, semonitor -t 2)"),
    ([command_line(0x11, 0x80, 1, "").decode()], "command 0x0011 is not a parameter read"),
    ([command_line(0x12, 0x90, 1, {"value": -1, "type": 0}).decode()], "data.value must be an integer 0..4294967295"),
    ([command_line(0x12, 0x90, 1, {"value": 2**32, "type": 0}).decode()], "got 4294967296"),
    ([command_line(0x12, 0x90, 1, {"value": True, "type": 0}).decode()], "got True"),
])
def test_bad_input_names_the_problem(lines: list[str], message: str) -> None:
    with pytest.raises(keyfile.KeyfileError) as e:
        keyfile.values_from_lines(lines)
    assert message in str(e.value)


def test_command_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "short.json"
    bad.write_bytes(answers(bytes(16)).splitlines(keepends=True)[0])
    r = subprocess.run([str(BIN / "sekey"), "-o", str(tmp_path / "k"), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("sekey: error: ") and "found 1" in r.stderr
    assert not (tmp_path / "k").exists()
    r = subprocess.run([str(BIN / "sekey"), str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read" in r.stderr


@given(st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4))
def test_any_values_round_trip(values: list[int]) -> None:
    lines = [command_line(0x12, 0x90, i, {"value": v, "type": 2}).decode() for i, v in enumerate(values)]
    got = keyfile.values_from_lines(lines)
    assert got == values
    assert struct.unpack("<4L", parse_key(keyfile.key_hex(got))) == tuple(values)


def test_read_the_key_from_the_simulator_with_semonitor(tmp_path: Path) -> None:
    """simulator (inverter on a pty, RS232) <- semonitor -c key parameters -> sekey -> the same key."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    if not (BIN / "semonitor").exists():
        pytest.skip("semonitor is not installed")
    a, b = tmp_path / "inverter-tty", tmp_path / "semonitor-tty"
    socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                             stderr=subprocess.DEVNULL)
    sim = None
    try:
        wait_for(lambda: a.exists() and b.exists(), 10, "socat to create the pty pair", interval=0.02,
                 stop_if=lambda: socat.poll() is not None and f"socat exited {socat.returncode}")
        sim = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "simulate", "solaredge",
                                "--serial", str(a), "--key", str(KEY_FILE), "--interval", "3600", "-q"],
                               stderr=subprocess.PIPE)
        out = tmp_path / "key.json"
        r = subprocess.run([str(BIN / "semonitor"), "-c", keyfile.KEY_COMMANDS, "-s", "7F104920", "-t", "2",
                            "--command-delay", "0", "-o", str(out), str(b)], capture_output=True, timeout=60,
                           cwd=tmp_path)  # semonitor keeps its sequence number in ./seseq.txt
        assert r.returncode == 0, r.stderr
        r = subprocess.run([str(BIN / "sekey"), "-o", str(tmp_path / "read.key"), str(out)],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "read.key").read_bytes() == KEY_FILE.read_bytes()
        assert (tmp_path / "seseq.txt").read_text() == "4\n"
    finally:
        for p in (sim, socat):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()
