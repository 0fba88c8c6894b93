"""Issue 17 item 9: the commands `solarbridge demo` prints can be pasted as they are, venv activated or not."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solarbridge.cli.demo import CommandHints

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def needs_installed_scripts() -> None:
    if not (BIN / "solarbridge").exists() or not (BIN / "givtcp-read").exists():
        pytest.skip(f"solarbridge is not installed in {BIN} (pip install -e .)")


def test_demo_hints_work_without_the_venv_on_path(tmp_path):
    needs_installed_scripts()
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != BIN.resolve())
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO / "src")}
    # stopped with Ctrl-C, as a user does (a --duration run would also insist that every sink delivered the
    # back-filled day in time, which is not what this test is about)
    proc = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "demo", "--no-api",
                             "--dir", str(tmp_path / "demo")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    text = ""
    for line in proc.stdout:
        text += line
        if "Press Ctrl-C" in line:
            break
    time.sleep(2)  # some history for the printed query to find
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    text += rest
    assert proc.returncode == 0, err
    # the commands are spelled with their path (relative to where the user stands), and say how to activate
    assert "query: .venv/bin/solarbridge history" in text or f"query: {BIN}/solarbridge history" in text, text
    assert "givtcp-read --host" in text
    assert not re.search(r"(?<![\w/.-])givtcp-read --host", text), text
    assert re.search(r"source \S*bin/activate", text), text
    # and the printed history query runs, as printed, with the same PATH (after the demo stopped)
    query = re.search(r"query: (.+ --since 1h)\)", text).group(1)
    res = subprocess.run(shlex.split(query), capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("time") and len(res.stdout.splitlines()) > 1, res.stdout


def test_commands_on_path_are_printed_by_name(monkeypatch):
    needs_installed_scripts()
    monkeypatch.setenv("PATH", str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    hints = CommandHints()
    assert hints("solarbridge") == "solarbridge"
    assert hints.rewrite("read it: givtcp-read --host 127.0.0.1 runAll") == "read it: givtcp-read --host 127.0.0.1 runAll"
    assert hints.venv_hint == ""


def test_rewrite_touches_only_command_words(monkeypatch):
    needs_installed_scripts()
    monkeypatch.setenv("PATH", "/nonexistent")
    hints = CommandHints()
    text = "sunsynk: port file /tmp/enphase-monitor.dev; run enphase-monitor -s ups, or semonitor"
    out = hints.rewrite(text)
    assert "/tmp/enphase-monitor.dev" in out  # part of a path: left alone
    assert f"run {hints('enphase-monitor')} -s ups" in out and out.endswith(hints("semonitor"))
    assert hints("enphase-monitor") != "enphase-monitor"
