"""The enphase-monitor command: options, usage and fatal errors, cloud token, gateway failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from servers import wait_for
from solarbridge.cli.enphase_monitor import main
from solarbridge.sources.enphase import jwt
from support.enphase import SimThread, port_values, write_conf


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------- usage and fatal errors


def test_help(capsys) -> None:
    rc, out, err = run(capsys, "-h")
    assert rc == 0 and out.startswith("Usage: enphase-monitor [-d] [-v] [-s] [-x] [-h] -c <config> | <ups>")
    assert run(capsys, "--help")[0] == 0


def test_usage_errors(capsys, monkeypatch) -> None:
    monkeypatch.delenv("CONFIG_FILE", raising=False)
    monkeypatch.delenv("UPS", raising=False)
    rc, out, err = run(capsys)
    assert rc == 2 and err.startswith("Usage:") and out == ""
    rc, out, err = run(capsys, "-z")
    assert rc == 2 and err.startswith("Unknown option: '-z'\nUsage:")
    rc, out, err = run(capsys, "-c")
    assert rc == 2 and "Usage:" in err


def test_ups_must_be_set(capsys, tmp_path, monkeypatch) -> None:
    """Without a config file the UPS must come from somewhere; the message has no stray space (issue 17.10)."""
    from solarbridge.sources.enphase.settings import Fatal, from_values

    with pytest.raises(Fatal, match=r"^UPS must be set \(env, <config> or as argument\)$") as e:
        from_values({}, None, ups="", env={})
    assert e.value.code == 2
    monkeypatch.delenv("UPS", raising=False)
    monkeypatch.delenv("CONFIG_FILE", raising=False)
    rc, out, err = run(capsys, "-c", str(tmp_path / "nope.conf"))
    assert (rc, err) == (1, f"enphase-monitor: Unable to read config '{tmp_path / 'nope.conf'}'\n")


def test_fatal_config_errors(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UPS", "test")
    rc, _, err = run(capsys, "-c", str(tmp_path / "nope.conf"))
    assert (rc, err) == (1, f"enphase-monitor test: Unable to read config '{tmp_path / 'nope.conf'}'\n")
    conf = write_conf(tmp_path, "127.0.0.1:1")
    conf.chmod(0o644)
    rc, _, err = run(capsys, "-c", str(conf))
    assert (rc, err) == (1, f"enphase-monitor test: World read permissions exist on config {conf}\n")
    conf.chmod(0o600)
    tmp_path.chmod(0o777)
    rc, _, err = run(capsys, "-c", str(conf))
    assert (rc, err) == (1, f"enphase-monitor test: World write permissions on config directory {tmp_path}\n")
    tmp_path.chmod(0o755)
    conf.write_text("USERNAME=x\nPASSWORD=\nPORT_FILE=ups.dev\n")
    rc, _, err = run(capsys, "-c", str(conf))
    assert rc == 1 and err.endswith(f"Config {conf} requires values for PASSWORD SERIAL\n")
    conf.write_text("USERNAME=x\n$(reboot)\n")
    rc, _, err = run(capsys, "-c", str(conf))
    assert rc == 1 and f"Config {conf} cannot be parsed (line 2:" in err
    conf.write_text("USERNAME=x\nPASSWORD=y\nSERIAL=1\nPORT_FILE=ups.dev\nSTATE_DIR=/nonexistent/dir\n")
    rc, _, err = run(capsys, "-c", str(conf))
    assert rc == 1 and "STATE_DIR '/nonexistent/dir' not writable!" in err
    conf.write_text(f"USERNAME=x\nPASSWORD=y\nSERIAL=1\nPORT_FILE=ups.dev\nSTATE_DIR={tmp_path}\nPOLLFREQ=often\n")
    rc, _, err = run(capsys, "-c", str(conf))
    assert rc == 2 and "POLLFREQ must be a whole number >= 5 (got 'often')" in err


def test_port_file_must_pre_exist(capsys, sim, conf) -> None:
    (conf.parent / "ups.dev").unlink()
    rc, _, err = run(capsys, "-s", "-c", str(conf))
    assert rc == 1 and f"Port file '{conf.parent / 'ups.dev'}' unreadable" in err


def test_ups_argument_reads_confdir(capsys, sim, conf, monkeypatch) -> None:
    monkeypatch.setenv("NUT_SYSCONFIG", str(conf.parent))
    monkeypatch.delenv("CONFIG_FILE", raising=False)
    rc, _, err = run(capsys, "-s", "test")
    assert rc == 0, err
    assert port_values((conf.parent / "ups.dev").read_text())["ups.status"] == "OL"


def test_clamps_minimums(tmp_path) -> None:
    from solarbridge.sources.enphase.settings import from_values

    s = from_values({"USERNAME": "u", "PASSWORD": "p", "SERIAL": "1", "PORT_FILE": "x.dev", "STATE_DIR": str(tmp_path),
                     "POLLFREQ": "1", "POLLFREQALERT": "0", "LOGIN_TIMEOUT": "1", "API_TIMEOUT": "1",
                     "LOADKWH": "0"}, None, ups="u", env={})
    assert (s.pollfreq, s.pollfreqalert, s.login_timeout, s.api_timeout, s.loadkwh) == (5, 5, 5, 2, 0)
    assert s.token_file == tmp_path / "enphase-u.token" and s.port_file == tmp_path / "x.dev"
    assert s.relayfreq == 2 and s.envoy_host == "envoy.local"


# --------------------------------------------------------------------------- against the simulator


def test_single_poll_writes_port_file(capsys, sim: SimThread, conf: Path) -> None:
    rc, out, err = run(capsys, "-v", "-s", "-c", str(conf), "test")
    assert rc == 0, err
    assert out == ("Communication restored, restoring portfile\nups.status now OL\n"
                   f"Updating {conf.parent / 'ups.dev'}\n")
    v = port_values((conf.parent / "ups.dev").read_text())
    assert v["ups.status"] == "OL" and v["battery.charge"] == "95" and v["battery.voltage"] == "85.2"
    assert v["ups.delay.shutdown"] == "20" and v["ups.firmware"] == "D8.3.5169"
    assert v["device.serial"] == "202439990001" and v["battery.capacity"] == "5000"
    tok = conf.parent / "enphase-test.token"
    assert tok.stat().st_mode & 0o007 == 0
    text = tok.read_text()
    assert not text.endswith("\n") and jwt.check(text, time.time())[0]
    assert sim.stats()["login"] == 1 and sim.stats()["tokens"] == 1
    # cached token: no second login
    rc, out, err = run(capsys, "-v", "-s", "-c", str(conf))
    assert rc == 0 and out == ""  # nothing changed: no rewrite, no messages
    assert sim.stats()["login"] == 1


def test_token_with_less_than_an_hour_is_renewed(capsys, sim, conf) -> None:
    tok = conf.parent / "enphase-test.token"
    tok.write_text(jwt.make({"exp": int(time.time()) + 3500}))
    tok.chmod(0o600)
    rc, out, err = run(capsys, "-v", "-s", "-c", str(conf))
    assert rc == 0 and "Token lifetime less than 1 hour" in out
    assert sim.stats()["login"] == 1 and jwt.expiry(tok.read_text()) > time.time() + 86400


def test_world_readable_token_file_is_fatal(capsys, sim, conf) -> None:
    tok = conf.parent / "enphase-test.token"
    tok.write_text(jwt.make({"exp": int(time.time()) + 86400}))
    tok.chmod(0o644)
    rc, _, err = run(capsys, "-s", "-c", str(conf))
    assert rc == 1 and f"World read permissions exist on token file {tok}" in err


@pytest.mark.parametrize("patch,message", [
    ({"password": "other"}, "Enphase login failed for user owner@example.com"),
    ({"fail_login": "missing"}, "Unable to retrieve session_id for user owner@example.com"),
    ({"fail_tokens": "http500"}, "Failed to acquire web_token for user owner@example.com, serial# 202439990001"),
    ({"token_lifetime_s": 600}, "New token invalid, verify serial# 202439990001"),
    ({"serial": "999"}, "Failed to acquire web_token"),
])
def test_cloud_failures_are_fatal(capsys, sim, conf, patch, message) -> None:
    sim.set(**patch)
    rc, _, err = run(capsys, "-s", "-c", str(conf))
    assert rc == 1 and err.startswith("enphase-monitor test: ") and message in err
    assert sim.stats().get("relay", 0) == 0  # token first, gateway never contacted


def test_nocomms_option(capsys, sim, conf) -> None:
    assert run(capsys, "-s", "-c", str(conf))[0] == 0
    rc, out, err = run(capsys, "-v", "-x", "-c", str(conf))
    assert rc == 0 and "Communication lost, hiding portfile" in out
    d = conf.parent
    assert not (d / "ups.dev").exists() and (d / "ups.dev-nocomms").exists()
    assert port_values((d / "ups.dev-nocomms").read_text())["ups.status"] == "OL"  # content untouched
    assert sim.stats()["relay"] == 1  # -x made no gateway call
    rc, out, err = run(capsys, "-v", "-s", "-c", str(conf))
    assert rc == 0 and "Communication restored, restoring portfile" in out
    assert (d / "ups.dev").exists() and not (d / "ups.dev-nocomms").exists()


@pytest.mark.parametrize("mode", ["http500", "html", "badjson", "empty", "missing", "unknown", "close", "timeout",
                                  "http401"])
def test_relay_failures_mean_nocomms(capsys, sim, conf, mode) -> None:
    assert run(capsys, "-s", "-c", str(conf))[0] == 0
    sim.set(fail_relay=mode)
    t0 = time.monotonic()
    rc, out, err = run(capsys, "-v", "-s", "-c", str(conf))
    assert rc == 0, err
    assert "Communication lost, hiding portfile" in out
    assert (conf.parent / "ups.dev-nocomms").exists() and not (conf.parent / "ups.dev").exists()
    assert time.monotonic() - t0 < 15  # API_TIMEOUT=2 with one retry
    if mode in ("missing", "unknown"):
        assert "envoy relay API" in err
    if mode == "http401":
        assert not (conf.parent / "enphase-test.token").exists()  # refused token: logged in again next time


@pytest.mark.parametrize("endpoint,mode", [("livedata", "html"), ("reports", "badjson"), ("secctrl", "close"),
                                           ("info", "http500"), ("reports", "close")])
def test_other_endpoint_failures_keep_going(capsys, sim, conf, endpoint, mode) -> None:
    sim.set(**{f"fail_{endpoint}": mode})
    rc, out, err = run(capsys, "-s", "-c", str(conf))
    assert rc == 0, err
    v = port_values((conf.parent / "ups.dev").read_text())
    assert v["ups.status"] == "OL"
    if endpoint == "livedata":
        assert "battery.charge" not in v and "battery.voltage" not in v  # the original's rule
    if endpoint == "reports":
        assert v["output.realpower"] == "0.0"
    if endpoint == "info":
        assert "ups.firmware" not in v
    if endpoint == "secctrl":
        assert v["battery.charge.restart"] == "10"


def test_tls_error_is_nocomms(capsys, tmp_path, sim, monkeypatch) -> None:
    """A gateway address that does not speak TLS: the handshake fails, no crash, nocomms."""
    monkeypatch.setenv("UPS", "test")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.sendall(b"HTTP/1.0 200 OK\r\n\r\nplain text, not TLS\r\n")
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        conf = write_conf(tmp_path, f"127.0.0.1:{srv.getsockname()[1]}")
        (tmp_path / "ups.dev").write_text("ups.status: OL\n")
        rc, out, err = run(capsys, "-v", "-s", "-c", str(conf))
    finally:
        stop.set()
        t.join(2)
        srv.close()
    assert rc == 0, err
    assert "Communication lost" in out and (tmp_path / "ups.dev-nocomms").exists()


def test_debug_hides_secrets_below_level_two(capsys, sim, conf) -> None:
    rc, out, err = run(capsys, "-d", "-s", "-c", str(conf))
    assert rc == 0
    assert "DEBUG:  PASSWORD=<hidden>" in err and "pw d&=" not in err and "Bearer" not in err
    assert "DEBUG:  curl to https://127.0.0.1:" in err
    rc, out, err = run(capsys, "-d", "-d", "-s", "-c", str(conf))
    assert "DEBUG2: PASSWORD=pw d&=" in err and "Bearer ey" in err


def test_sigterm_exits_cleanly(sim, conf) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.enphase_monitor", "-v", "-c", str(conf)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: "ups.status: OL" in (conf.parent / "ups.dev").read_text(), 15,
                 "enphase-monitor to write ups.status: OL",
                 stop_if=lambda: p.poll() is not None and f"enphase-monitor exited {p.returncode}: {p.stderr.read()}")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 0, p.stderr.read() if p.stderr else ""
    v = port_values((conf.parent / "ups.dev").read_text())
    assert v["ups.status"] == "OL" and v["ups.load"]
    assert not list(conf.parent.glob(".ups.dev.*"))
