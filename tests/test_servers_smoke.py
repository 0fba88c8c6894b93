"""Each real-server fixture starts, answers, and stops by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from servers import wait_for

pytestmark = pytest.mark.servers


def test_mosquitto_pub_sub_retained(mosquitto):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-t", "smoke/t", "-m", "hi",
                    "-r"], check=True, timeout=10)
    out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-t", "smoke/#", "-C",
                          "1", "-W", "5", "-v"], capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "smoke/t hi"
    pid = mosquitto.pid
    mosquitto.stop()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 2, what=f"mosquitto pid {pid} to be gone after stop()")


def test_nut_dummy_ups_follows_port_file(nut):
    assert nut.upsc("ups.status") == "OL"
    text = nut.port_file.read_text().replace("battery.charge: 100", "battery.charge: 42")
    nut.port_file.write_text(text)
    nut.wait_value("battery.charge", "42")


def test_carbon_line_port_to_whisper(carbon):
    ts = int(time.time())
    with socket.create_connection(("127.0.0.1", carbon.line_port)) as s:
        s.sendall(f"smoke.metric 42.5 {ts}\n".encode())
    points = carbon.wait_points("smoke.metric", ts - 5, 1)
    assert points == [(ts, 42.5)]


def test_victoria_influx_v2_write_and_export(victoria):
    import httpx

    ts_ns = time.time_ns()
    r = httpx.post(f"{victoria.url}/api/v2/write", params={"org": "o", "bucket": "b"},
                   content=f"smoke,dev=x value=55 {ts_ns}")
    assert r.status_code == 204
    series = victoria.wait_series('{__name__="smoke_value"}')
    assert series[0]["values"] == [55]
    assert series[0]["timestamps"] == [ts_ns // 1_000_000]
    assert series[0]["metric"]["dev"] == "x"


def test_mosquitto_with_password_refuses_anonymous(mosquitto_factory):
    srv = mosquitto_factory(users={"alice": "s3cret"})
    anon = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(srv.port), "-t", "x", "-m", "1"],
                          capture_output=True, timeout=10)
    assert anon.returncode != 0
    ok = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(srv.port), "-u", "alice", "-P", "s3cret",
                         "-t", "x", "-m", "1"], capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr


def test_carbon_and_victoria_restart_on_same_ports(carbon, victoria):
    lp, hp = carbon.line_port, victoria.http_port
    carbon.stop()
    victoria.stop()
    carbon.start()
    victoria.start()
    assert (carbon.line_port, victoria.http_port) == (lp, hp)
    assert carbon.alive() and victoria.alive()
