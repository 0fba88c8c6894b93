"""Command behaviour: options, bad input reporting, strictness, following, atomic state, exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers import finish, wait_for
from solarbridge.cli import se2csv, se2graphite, se2state
from solarbridge.cli.jsonlines import JsonLines, parse_line
from support.convtools import DATA

BIN = Path(sys.executable).parent
GOOD = (DATA / "recorded.json").read_text().splitlines()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_bad_line_is_reported_with_its_number_and_skipped(tmp_path, capsys):
    src = _write(tmp_path / "in.json", [GOOD[0], '{"inverters": ', "[1, 2]", GOOD[1]])
    rc = se2csv.main(["-p", str(tmp_path / "o"), str(src)])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"se2csv: {src}:2: skipped malformed JSON line: Expecting value at column 15" in err
    assert f"{src}:3: skipped malformed JSON line: not a JSON object (got list)" in err
    assert len((tmp_path / "o.optimizers.csv").read_bytes().splitlines()) == 5 + 8  # lines 1 and 4 kept


def test_strict_flag_stops_at_the_first_bad_line(tmp_path, capsys):
    src = _write(tmp_path / "in.json", [GOOD[0], "garbage", GOOD[1]])
    rc = se2graphite.main(["--dry-run", "-x", str(src)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert err.strip() == f"se2graphite: {src}:2: malformed JSON line (Expecting value at column 1); stopped (-x)"
    assert out and "optimizers.20236519" in out  # line 1 was sent before stopping


def test_no_traceback_on_binary_garbage_from_stdin():
    junk = os.urandom(4000) + b"\n\xff\xfe{\n" + b"\x00" * 100
    for tool, args in (("se2graphite", ["--dry-run"]), ("pickle2graphite", ["--dry-run"]),
                       ("se2csv", ["-p", "/nonexistent-dir/x"])):
        p = subprocess.run([str(BIN / tool), *args], input=junk, capture_output=True, timeout=30)
        assert b"Traceback" not in p.stderr, (tool, p.stderr[-500:])
        assert p.returncode in (0, 1), (tool, p.returncode, p.stderr[-300:])
        assert b"skipped malformed JSON line" in p.stderr


def test_missing_input_file_is_one_line_exit_2(tmp_path, capsys):
    rc = se2csv.main(["-p", str(tmp_path / "x"), str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cannot read" in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["-d", "ab", "-p", "x"], "the delimiter must be one character"),
    (["-d", '"', "-p", "x"], "cannot be a delimiter"),
])
def test_se2csv_bad_options_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        se2csv.main(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_se2csv_needs_a_prefix_for_stdin(capsys, monkeypatch):
    rc = se2csv.main([])
    assert rc == 2 and "-p PREFIX is required when reading stdin" in capsys.readouterr().err


def test_se2csv_prefix_defaults_to_input_name_and_deprecated_options_warn(tmp_path, capsys):
    src = _write(tmp_path / "day.json", GOOD[:1])
    assert se2csv.main(["-i", "inv.csv", "-t", str(src)]) == 0
    assert "the -i option is deprecated" in capsys.readouterr().err
    assert (tmp_path / "day.optimizers.csv").read_bytes().startswith(b"__Identifier__,Date,")


def test_se2csv_tab_delimiter_by_name(tmp_path):
    src = _write(tmp_path / "d.json", GOOD[:1])
    assert se2csv.main(["-d", "\\t", "-p", str(tmp_path / "t"), str(src)]) == 0
    first = (tmp_path / "t.optimizers.csv").read_bytes().split(b"\r\n")[0]
    assert first.count(b"\t") == 10 and b"," not in first


def test_se2graphite_bad_zone_and_port(capsys):
    assert se2graphite.main(["--dry-run", "--tz", "Mars/Olympus", str(DATA / "recorded.json")]) == 2
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        se2graphite.main(["-p", "70000"])
    assert e.value.code == 2 and "--port: must be a TCP port 1..65535 (got '70000')" in capsys.readouterr().err


def test_se2graphite_gives_up_after_retry_for_with_one_line(capsys):
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    rc = se2graphite.main(["-h", "127.0.0.1", "-p", str(port), "--retry-for", "0.5", "--delay", "0",
                           str(DATA / "recorded.json")])
    err = capsys.readouterr().err
    assert rc == 1 and time.monotonic() - t0 < 10
    assert "unreachable" in err.splitlines()[-1] and "Traceback" not in err


def test_stdin_is_read_when_no_file_given(utc):
    p = subprocess.run([str(BIN / "se2graphite"), "--dry-run", "--tz", "UTC", "-b", "solar"],
                       input=(DATA / "recorded.json").read_bytes(), capture_output=True, timeout=30)
    assert p.returncode == 0
    assert p.stdout == (DATA / "golden" / "recorded.graphite.txt").read_bytes()


# ----------------------------------------------------------------------------- JsonLines


def test_follow_reads_appended_lines_and_survives_replacement(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"n": 1}\n{"n": ')
    seen: list[int] = []
    done = threading.Event()
    reader = JsonLines(str(path), follow=True, poll=0.02, stderr=io.StringIO())

    def consume() -> None:
        for _, obj in reader:
            seen.append(obj["n"])
            if obj["n"] == 4:
                done.set()
                return

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    wait_for(lambda: seen == [1], 10, lambda: f"the follower to read line 1 (seen: {seen})", interval=0.01)
    with path.open("a") as f:
        f.write('2}\n{"n": 3}\n')  # completes the partial line
    wait_for(lambda: seen == [1, 2, 3], 10, lambda: f"the follower to read lines 1-3 (seen: {seen})", interval=0.01)
    tmp = tmp_path / "g.json"
    tmp.write_text('{"n": 4}\n')
    os.replace(tmp, path)  # log rotation: a new file under the same name
    assert done.wait(10)
    assert seen == [1, 2, 3, 4]


def test_progress_bar_does_not_change_results(tmp_path):
    err = io.StringIO()
    rows = list(JsonLines(str(DATA / "simulated.json"), progress=True, stderr=err))
    assert len(rows) == len((DATA / "simulated.json").read_text().splitlines())


def test_overlong_line_is_reported_and_the_next_line_read(tmp_path, monkeypatch):
    import solarbridge.cli.jsonlines as jl

    monkeypatch.setattr(jl, "MAX_LINE", 100)
    monkeypatch.setattr(jl, "CHUNK", 64)
    path = tmp_path / "l.json"
    path.write_text('{"a": 1}\n' + '{"x": "' + "y" * 500 + '"}\n{"a": 2}\n')
    err = io.StringIO()
    reader = JsonLines(str(path), stderr=err)
    assert [(n, o) for n, o in reader] == [(1, {"a": 1}), (3, {"a": 2})]
    assert ":2: skipped malformed JSON line: line longer than 100 bytes" in err.getvalue()


# ----------------------------------------------------------------------------- se2state


def test_se2state_follows_and_replaces_the_file_atomically(tmp_path):
    src = tmp_path / "live.json"
    src.write_text("")
    state = tmp_path / "state.json"
    proc = subprocess.Popen([str(BIN / "se2state"), "-o", str(state), "--poll", "0.02", str(src)],
                            stderr=subprocess.PIPE)
    partial = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                text = state.read_text()
            except FileNotFoundError:
                continue
            try:
                json.loads(text)
            except ValueError:
                partial.append(text)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        lines = (DATA / "simulated.json").read_text().splitlines()
        for line in lines[:-1]:
            with src.open("a") as f:
                f.write(line + "\n")
            time.sleep(0.03)
        want = json.loads(lines[-2])["inverters"]["7F104920"]["Time"]
        wait_for(lambda: json.loads(state.read_text())["inverters"]["7F104920"]["Time"] == want, 15,
                 f"the state file to reach Time {want}", interval=0.05, ignore=(FileNotFoundError, ValueError, KeyError))
        assert proc.poll() is None  # still following
    finally:
        stop.set()
        w.join(5)
        proc.send_signal(signal.SIGINT)
        _, err = finish(proc, 10)  # killed if it does not stop
    assert partial == []
    assert b"Traceback" not in err and proc.returncode == 130


def test_se2state_init_and_unreadable_state(tmp_path, capsys):
    state = tmp_path / "s.json"
    state.write_text("{not json")
    src = _write(tmp_path / "in.json", GOOD[:1])
    assert se2state.main(["--once", "-o", str(state), str(src)]) == 0
    assert "existing state unreadable" in capsys.readouterr().err
    assert se2state.main(["--once", "-i", "7F1,7F2", "-o", str(state), str(tmp_path / "in.json")]) == 0
    s = json.loads(state.read_text())
    assert {"7F1", "7F2", "stats"} <= set(s["inverters"]) and len(s["optimizers"]) == 1 + len(json.loads(GOOD[0])["optimizers"])


@given(st.binary(max_size=300))
def test_parse_line_never_raises(raw):
    obj, reason = parse_line(raw)
    assert (obj is None) != (reason == "")


def test_parse_line_accepts_nan_and_latin1():
    obj, _ = parse_line('{"a": NaN, "b": "caf\xe9"}'.encode("latin-1"))
    assert obj is not None and obj["b"] == "caf\xe9" and obj["a"] != obj["a"]
    deep, reason = parse_line(b"[" * 100_000 + b"]" * 100_000)
    assert deep is None and reason == "nested too deeply"
