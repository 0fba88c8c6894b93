"""GivTCP commands given an impossible port: one line naming the program and the option, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(("argv", "option", "value"), [
    (["givtcp-read", "--port", "99999"], "--port", "99999"),
    (["givtcp-read", "--port=-1"], "--port", "-1"),
    (["givtcp-write", "pauseChargeSchedule", "--port", "99999"], "--port", "99999"),
    (["givtcp-write", "--port=-1", "pauseChargeSchedule"], "--port", "-1"),
    (["givtcp-rest", "--listen-port", "99999"], "--listen-port", "99999"),
    (["solarbridge", "giv", "rest", "--listen-port", "99999"], "--listen-port", "99999"),
    (["solarbridge", "giv", "read", "--port", "70000"], "--port", "70000"),
    (["solarbridge", "giv", "discover", "--port", "0", "--network", "127.0.0.1/32"], "--port", "0"),
])
def test_bad_port_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], option: str, value: str) -> None:
    env = {**os.environ, "INVERTOR_IP": "127.0.0.1", "CACHELOCATION": str(tmp_path)}
    r = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    prog = " ".join(argv[:3]) if argv[0] == "solarbridge" else argv[0]
    assert lines[0] == f"{prog}: error: {option}: must be a TCP port 1..65535 (got {value})"
    assert "Traceback" not in r.stderr and r.stdout == ""
