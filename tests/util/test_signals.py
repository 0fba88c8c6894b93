"""util.signals: the one serve-until-SIGINT/SIGTERM helper, in-process and in a real command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from servers import finish
from solarbridge.util.signals import StopSignals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_sets_the_event_and_handlers_are_removed(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    seen: list[int] = []

    async def go() -> StopSignals:
        with StopSignals(on_signal=seen.append) as stop:
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), sig)
            await asyncio.wait_for(stop.wait(), 10)
            # a second signal during shutdown is absorbed by the handler, not a KeyboardInterrupt
            os.kill(os.getpid(), sig)
            await asyncio.sleep(0.05)
        return stop

    stop = asyncio.run(go())
    assert stop.signum == sig and stop.name == sig.name
    assert seen == [sig, sig]
    assert signal.getsignal(sig) == before


def test_caller_event_ends_the_wait_without_a_signal() -> None:
    async def go() -> StopSignals:
        ev = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, ev.set)
        with StopSignals(ev) as stop:
            await asyncio.wait_for(stop.wait(), 10)
        return stop

    stop = asyncio.run(go())
    assert stop.signum is None and stop.name == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_simulator_stops_cleanly_on_signal(sig: signal.Signals) -> None:
    """A real long-running command (the GivEnergy simulator) ends with exit 0 and no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--host", "127.0.0.1",
                          "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        p.send_signal(sig)
        out, err = finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "Traceback" not in err


def test_synchronous_use_sets_the_flag_then_a_second_signal_interrupts() -> None:
    """Outside an event loop (seextract following a capture): plain handlers, put back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set() and stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
