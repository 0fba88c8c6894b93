"""End to end with real NUT: simulator -> enphase-monitor -> port file -> dummy-ups -> upsd -> upsc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers import wait_for
from support.enphase import SimThread, write_conf

pytestmark = pytest.mark.servers




def test_grid_off_low_battery_nocomms_with_real_nut(sim: SimThread, tmp_path: Path, nut_factory) -> None:
    d = tmp_path / "mon"
    d.mkdir()
    port = d / "ups.dev"
    port.write_text("ups.status: OL\nbattery.charge: 100\nups.delay.shutdown: 20\n")
    nut = nut_factory(ups="test", port_file=port, initial=None)
    conf = write_conf(d, f"127.0.0.1:{sim.sim.port}", POLLFREQ="5", POLLFREQALERT="5", RELAYFREQ="1")
    env = dict(os.environ, UPS="test", PYTHONUNBUFFERED="1")
    mon = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.enphase_monitor", "-v", "-c", str(conf)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        nut.wait_value("battery.charge", "95", 30)  # start-up and first poll, on a loaded machine
        assert nut.upsc("ups.status") == "OL"
        assert nut.upsc("battery.voltage") == "85.2"
        assert nut.upsc("ups.delay.shutdown") == "20"

        sim.set(grid="off")
        t0 = time.monotonic()
        nut.wait_value("ups.status", "OB", 8)
        latency = time.monotonic() - t0
        assert latency < 8

        sim.set(soc=15)  # below battery.charge.low (20): next full poll (POLLFREQALERT 5 s)
        nut.wait_value("ups.status", "OB LB", 12)
        assert nut.upsc("battery.charge") == "15"

        # comms lost: the port file is renamed away and NUT 2.8.0's dummy-ups exits
        sim.set(fail_relay="http500")
        wait_for(lambda: (d / "ups.dev-nocomms").exists() and not port.exists(), 12, "nocomms rename")
        wait_for(lambda: not nut.alive("driver"), 10, "dummy-ups to exit")
        assert "Driver not connected" in nut.upsc("ups.status") or "exit" in nut.upsc("ups.status")

        # comms back: enphase-monitor renames the file back; the driver must be restarted
        # (the systemd unit for dummy-ups does it with Restart=; here we do it by hand)
        sim.set(fail_relay="none")
        wait_for(lambda: port.exists() and not (d / "ups.dev-nocomms").exists(), 12, "restore rename")
        nut.start_driver()
        nut.wait_value("ups.status", "OB LB", 10)

        sim.set(grid="on", soc=60)
        nut.wait_value("ups.status", "OL", 10)
    finally:
        mon.terminate()
        out = mon.communicate(timeout=10)[0]
    assert mon.returncode == 0, out
    for msg in ("ups.status now OB", "ups.status now OB LB", "Communication lost, hiding portfile",
                "Communication restored, restoring portfile", "ups.status now OL"):
        assert msg in out
