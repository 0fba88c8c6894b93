"""semonitor end to end: files, stdin, follow, record file, options, network mode, serial ptys."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers import free_port, wait_for
from support.solaredge import DATA, EXAMPLES, pty_pair

PY = sys.executable
SIM = [PY, "-m", "solarbridge.sources.solaredge.simulator"]
MON = [PY, "-m", "solarbridge.cli.semonitor"]
ENV = dict(os.environ, TZ="US/Pacific")


def run(args: list[str], **kw) -> subprocess.CompletedProcess[bytes]:
    kw.setdefault("timeout", 60)
    return subprocess.run(MON + args, env=ENV, capture_output=True, **kw)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


# --------------------------------------------------------------------------- files


def test_file_to_stdout_and_record_byte_exact(tmp_path: Path) -> None:
    rec = tmp_path / "copy.rec"
    r = run(["-r", str(rec), "-x", str(DATA / "sample.rec")])
    assert r.returncode == 0, r.stderr
    assert r.stdout == (DATA / "sample.json").read_bytes()
    assert rec.read_bytes() == (DATA / "sample.rec").read_bytes()


def test_decoding_a_file_imports_only_what_it_needs(tmp_path: Path) -> None:
    """`semonitor -o` on a recording: no typing, argparse, logging, socket, crypto (start-up is CPU time per
    file)."""
    out = tmp_path / "out.json"
    code = ("import sys\nfrom solarbridge.cli.semonitor import main\n"
            f"rc = main(['-o', {str(out)!r}, {str(DATA / 'sample.rec')!r}])\n"
            "print(rc, [m for m in ('typing', 'argparse', 'logging', 'socket', 'pathlib', 'shutil',"
            " 'dataclasses', 'solarbridge.sources.solaredge.crypto') if m in sys.modules])")
    r = subprocess.run([PY, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0 []", r.stderr
    assert out.read_bytes() == (DATA / "sample.json").read_bytes()


# command lines parsed without argparse, and ones that must go to argparse (errors, other options)
PLAIN = [[], ["f.rec"], ["-"], ["-o", "out.json", "f.rec"], ["f.rec", "-o", "out.json"], ["-a", "-o", "o", "f"],
         ["-x", "-f", "-v", "f"], ["-vvv", "-v", "f"], ["-o", "a", "-o", "b", "f"], ["-a", "-a"], ["-o", "", ""]]
NOT_PLAIN = [["-h"], ["--help"], ["-o"], ["f", "-o"], ["-o", "-x", "f"], ["a", "b"], ["-ax", "f"], ["-vx"],
             ["--pcap", "c.pcap"], ["-t", "2", "/dev/ttyUSB0"], ["-oout", "f"], ["--", "f"], ["-5"], ["-v", "-k", "k"]]


def test_plain_command_lines_equal_argparse() -> None:
    """The usual command lines skip argparse (start-up time); the options are argparse's, to the last one."""
    from solarbridge.cli.semonitor import build_parser, plain_args

    for argv in PLAIN:
        quick = plain_args(argv)
        assert quick is not None, argv
        assert vars(quick) == vars(build_parser().parse_args(argv)), argv
    for argv in NOT_PLAIN:
        assert plain_args(argv) is None, argv


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from(["-a", "-f", "-x", "-v", "-vv", "-o", "out", "f.rec", "-", "-k", "-t", "2", "--pcap",
                                 "-h", "--", "-ax", "", "-o-"]), max_size=6))
def test_any_command_line_is_plain_only_where_argparse_agrees(argv: list[str]) -> None:
    from solarbridge.cli.semonitor import build_parser, plain_args

    quick = plain_args(argv)
    if quick is not None:
        assert vars(quick) == vars(build_parser().parse_args(argv)), argv


def test_stdin_and_append(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    data = (DATA / "sample.rec").read_bytes()
    assert run(["-o", str(out), "-"], input=data).returncode == 0
    assert run(["-a", "-o", str(out)], input=data).returncode == 0
    assert out.read_bytes() == (DATA / "sample.json").read_bytes() * 2
    assert run(["-o", str(out)], input=data).returncode == 0  # without -a it is rewritten
    assert out.read_bytes() == (DATA / "sample.json").read_bytes()


def test_x_stops_on_first_data_error(tmp_path: Path) -> None:
    from solarbridge.sources.solaredge.framing import Frame, encode
    from solarbridge.sources.solaredge.simulator import record

    bad = encode(Frame(1, 1, 0xFFFFFFFE, 0x0500, record(0x0010, 1, bytes(50))))
    src = tmp_path / "bad.rec"
    src.write_bytes(bad + (DATA / "sample.rec").read_bytes())
    r = run([str(src)])
    assert r.returncode == 0 and r.stdout == (DATA / "sample.json").read_bytes()  # bad message skipped
    r = run(["-x", str(src)])
    assert r.returncode == 1 and r.stdout == b"" and b"data error" in r.stderr


def test_follow_growing_file(tmp_path: Path) -> None:
    src = tmp_path / "grow.rec"
    out = tmp_path / "out.json"
    data = (DATA / "sample.rec").read_bytes()
    half = len(data) // 2
    src.write_bytes(data[:half])
    p = subprocess.Popen(MON + ["-f", "-o", str(out), str(src)], env=ENV)
    try:
        wait_for(lambda: len(lines(out)) >= 3, timeout=15, what="first half decoded")
        n_first = len(lines(out))
        with open(src, "ab") as f:
            f.write(data[half:])
        wait_for(lambda: out.read_bytes() == (DATA / "sample.json").read_bytes(), timeout=15, what="all lines")
        assert n_first < 11
        assert p.poll() is None  # still following
    finally:
        stop(p)


def test_verbose_levels_log_messages(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    r = run(["-vvvv", "-d", str(log), "-o", str(tmp_path / "o.json"), str(DATA / "sample.rec")])
    assert r.returncode == 0
    text = log.read_text()
    assert "--> message:" in text and "PROT_CMD_SERVER_POST_DATA" in text and "data:       " in text
    r = run(["-v", str(DATA / "sample.rec")])
    assert b"--> message" not in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["-t", "n", "some.rec"], "Input file cannot be specified for network mode"),
    (["-t", "2", "some.rec"], "is not a valid serial device"),
    (["-m", "-s", "1"], "Master mode only allowed with RS485 serial device"),
    (["-c", "12,H239", "x.rec"], "Exactly one slave address"),
    (["-c", "12,H239", "-s", "7f104920", "x.rec"], "Command mode needs a serial device"),
    (["-c", "12,Q239", "-s", "1"], "Invalid command: 12,Q239"),
    (["-s", "xyz"], "Invalid slave ID: xyz"),
    (["-p", "70000", "-t", "n"], "Invalid port number: 70000"),
    (["-t", "5"], "invalid choice"),
])
def test_option_errors_exit_2(args: list[str], message: str) -> None:
    r = run(args)
    assert r.returncode == 2
    assert message in r.stderr.decode()


def test_bad_key_file_exit_2(tmp_path: Path) -> None:
    k = tmp_path / "k"
    k.write_text("nothex")
    r = run(["-k", str(k), str(DATA / "sample.rec")])
    assert r.returncode == 2 and b"32 hex characters" in r.stderr


# --------------------------------------------------------------------------- network mode


@pytest.mark.parametrize("encrypted", [False, True])
def test_network_mode_with_simulator(tmp_path: Path, encrypted: bool) -> None:
    port = free_port()
    out = tmp_path / "out.json"
    rec = tmp_path / "net.rec"
    args = ["-t", "n", "-p", str(port), "--listen", "127.0.0.1", "-o", str(out), "-r", str(rec)]
    if encrypted:
        args += ["-k", str(DATA / "7f104920.key")]
    mon = subprocess.Popen(MON + args, env=ENV, stderr=subprocess.PIPE)
    try:
        sim_args = ["--connect", f"127.0.0.1:{port}", "--interval", "0.05", "--count", "6", "--batteries", "1",
                    "--optimizers", "3", "--disconnect-every", "3", "--split", "-q"]
        if encrypted:
            sim_args += ["--encrypted", "--key", str(DATA / "7f104920.key")]
        s = subprocess.run(SIM + sim_args, env=ENV, capture_output=True, timeout=60)
        assert s.returncode == 0, s.stderr
        wait_for(lambda: len(lines(out)) == 6, timeout=15, what="6 telemetry lines")
    finally:
        stop(mon)
    got = lines(out)
    assert all(set(x["inverters"]) == {"7F104920"} and len(x["optimizers"]) == 3 for x in got)
    assert all("BAT000000SIM" in x["batteries_0x0030"]["7F104920"] for x in got)
    # the record file replays to the same output (passive decoding of both directions)
    key_args = ["-k", str(DATA / "7f104920.key")] if encrypted else []
    replay = run([*key_args, str(rec)])
    assert replay.stdout == out.read_bytes()
    if encrypted:  # without the key nothing can be read
        assert run([str(rec)]).stdout == b""


def test_network_mode_acks_and_time(tmp_path: Path) -> None:
    """Talk to semonitor -t n directly with the codec: ACK for 0x0500, GMT for 0x0501."""
    from solarbridge.sources.solaredge.framing import Frame, StreamDecoder, encode

    port = free_port()
    mon = subprocess.Popen(MON + ["-t", "n", "-p", str(port), "--listen", "127.0.0.1", "-o", str(tmp_path / "o")],
                           env=ENV)
    try:
        c = wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=5), 15,
                     f"semonitor to listen on port {port}", interval=0.05, ignore=(OSError,),
                     stop_if=lambda: mon.poll() is not None and f"semonitor exited {mon.returncode}")
        with c:
            c.sendall(encode(Frame(0x1234, 0x7F104920, 0xFFFFFFFE, 0x0501)) + encode(
                Frame(0x1235, 0x7F104920, 0xFFFFFFFE, 0x0500, b"")))
            d = StreamDecoder()
            got: list[Frame] = []
            wait_for(lambda: got.extend(d.feed(c.recv(4096))) or len(got) >= 2, 10,
                     lambda: f"two replies (got {got})", interval=0)
        t0 = time.time()
        assert got[0].function == 0x0580 and got[0].seq == 0x1234 and got[0].dst == 0x7F104920
        assert abs(int.from_bytes(got[0].payload[:4], "little") - t0) < 5
        assert got[1] == Frame(0x1235, 0xFFFFFFFE, 0x7F104920, 0x0080, b"")
    finally:
        stop(mon)


# --------------------------------------------------------------------------- serial over ptys




def test_rs232_commands_with_sequence_file(tmp_path: Path) -> None:
    s1, n1, s2, n2 = pty_pair()
    sim = subprocess.Popen(SIM + ["--serial", n2, "--interval", "30", "-q", "--key", str(DATA / "7f104920.key")],
                           env=ENV)
    try:
        (tmp_path / "seseq.txt").write_text("41\n")
        r = subprocess.run(MON + ["-t", "2", "-s", "7f104920", "-c", "12,H239/12,H23a/12,H23b/12,H23c/11,H329,L1/33",
                                  "--command-delay", "0", "-o", str(tmp_path / "keys.json"), n1],
                           env=ENV, capture_output=True, timeout=90, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    finally:
        stop(sim)
    got = lines(tmp_path / "keys.json")
    assert [x["sequence"] for x in got] == [42, 43, 44, 45, 46, 47]
    assert (tmp_path / "seseq.txt").read_text() == "47\n"
    assert [x["command"] for x in got] == [0x12] * 4 + [0x11, 0x33]
    assert [x["response"] for x in got] == [0x90] * 4 + [0x80, 0xB0]
    values = [x["data"]["value"] for x in got[:4]]
    from solarbridge.sources.solaredge.crypto import key_from_params, read_key_file

    assert key_from_params(values) == read_key_file(DATA / "7f104920.key")  # what sekey does
    assert got[5]["data"] == {"version": "0003.2468"}


def test_rs485_master_grants_each_slave(tmp_path: Path) -> None:
    s1, n1, s2, n2 = pty_pair()
    sim = subprocess.Popen(SIM + ["--serial", n2, "--rs485", "--inverters", "2", "--optimizers", "2", "-q",
                                  "--garbage", "0.3", "--split"], env=ENV)
    out = tmp_path / "out.json"
    mon = subprocess.Popen(MON + ["-t", "4", "-m", "-s", "7f104920,7f104a31", "--master-pause", "0.2", "-o", str(out),
                                  "-r", str(tmp_path / "bus.rec"), n1], env=ENV, cwd=tmp_path)
    try:
        wait_for(lambda: len(lines(out)) >= 4, timeout=30, what="telemetry from both slaves")
    finally:
        stop(mon)
        stop(sim)
    ids = [next(iter(x["inverters"])) for x in lines(out)]
    assert ids[:4] == ["7F104920", "7F104A31", "7F104920", "7F104A31"]
    assert int((tmp_path / "seseq.txt").read_text()) >= 4  # grants use the sequence file


def test_update_file_collects_firmware_writes(tmp_path: Path) -> None:
    import struct

    from solarbridge.sources.solaredge.framing import Frame, encode

    chunks = [(0x100, b"\xaa" * 40), (0x7FFF0, b"\x55" * 16), (0x10, b"hello")]
    data = b"".join(encode(Frame(i, 0xFFFFFFFE, 0x7F104920, 0x0021, struct.pack("<LL", off, len(c)) + c))
                    for i, (off, c) in enumerate(chunks))
    src = tmp_path / "upd.rec"
    src.write_bytes(data)
    upd = tmp_path / "fw.bin"
    r = run(["-u", str(upd), str(src)])
    assert r.returncode == 0 and r.stdout == b""
    image = upd.read_bytes()
    assert len(image) == 0x80000
    assert image[0x100:0x128] == b"\xaa" * 40 and image[0x7FFF0:] == b"\x55" * 16 and image[0x10:0x15] == b"hello"
    assert image.count(0) == 0x80000 - 40 - 16 - 5


@pytest.mark.parametrize("encrypted", [False, True])
def test_network_commands(tmp_path: Path, encrypted: bool) -> None:
    """-c in network mode: wait for the inverter, send the commands over its connection."""
    port = free_port()
    key = ["-k", str(DATA / "7f104920.key")] if encrypted else []
    mon = subprocess.Popen(MON + ["-t", "n", "-p", str(port), "--listen", "127.0.0.1", "-s", "7f104920",
                                  "-c", "12,H23c/33", "--command-delay", "0", "-o", str(tmp_path / "o.json"), *key],
                           env=ENV, cwd=tmp_path, stderr=subprocess.PIPE)
    sim = subprocess.Popen(SIM + ["--connect", f"127.0.0.1:{port}", "--interval", "0.2", "--duration", "20", "-q",
                                  *(["--encrypted"] if encrypted else [])], env=ENV)
    try:
        _, err = mon.communicate(timeout=40)
        assert mon.returncode == 0, err
    finally:
        stop(sim)
        stop(mon)
    got = lines(tmp_path / "o.json")
    assert [(x["command"], x["response"]) for x in got] == [(0x12, 0x90), (0x33, 0xB0)]
    assert got[0]["data"] == {"type": 0, "value": 0x78327E17}  # last quarter of the key, little-endian
    assert got[1]["sequence"] == got[0]["sequence"] + 1


def test_rs232_passive_telemetry(tmp_path: Path) -> None:
    s1, n1, s2, n2 = pty_pair()
    sim = subprocess.Popen(SIM + ["--serial", n2, "--interval", "0.1", "--optimizers", "2", "--three-phase",
                                  "--bad-crc", "0.3", "--seed", "4", "-q"], env=ENV)
    out = tmp_path / "out.json"
    mon = subprocess.Popen(MON + ["-t", "2", "-o", str(out), n1], env=ENV)
    try:
        wait_for(lambda: len(lines(out)) >= 3, timeout=15, what="telemetry over RS232")
    finally:
        stop(mon)
        stop(sim)
    got = lines(out)
    assert all("Vac3" in x["inverters"]["7F104920"] and len(x["optimizers"]) == 2 for x in got)
