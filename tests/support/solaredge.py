"""Hypothesis budget for this area: modest by default, heavy with SOLARBRIDGE_FUZZ=1 (make fuzz)."""

from __future__ import annotations

import os
import pty
import tty

import pytest
from hypothesis import HealthCheck, settings

from support.paths import DATA as DATA_ROOT

FUZZ = os.environ.get("SOLARBRIDGE_FUZZ") == "1"
settings.register_profile("solaredge", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("solaredge-fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
#: the framing fuzz test is cheap: it runs 10k examples even in CI
GARBAGE_EXAMPLES = 200_000 if FUZZ else 10_000
EXAMPLES = 20_000 if FUZZ else 200

DATA = DATA_ROOT / "solaredge"


def load_table(name: str) -> dict[str, bytes]:
    out = {}
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, h = line.split()
            out[key] = bytes.fromhex(h)
    return out


@pytest.fixture
def frames() -> dict[str, bytes]:
    return load_table("frames.txt")


@pytest.fixture
def records() -> dict[str, bytes]:
    return load_table("records.txt")


def pty_pair() -> tuple[int, str, int, str]:
    """Two linked ptys (like a null-modem cable), bridged by a small relay thread."""
    import threading

    m1, s1 = pty.openpty()
    m2, s2 = pty.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    n1, n2 = os.ttyname(s1), os.ttyname(s2)
    stop_ = threading.Event()

    def relay() -> None:
        import select

        while not stop_.is_set():
            r, _, _ = select.select([m1, m2], [], [], 0.1)
            for fd in r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    continue
                os.write(m2 if fd == m1 else m1, data)

    threading.Thread(target=relay, daemon=True).start()
    return s1, n1, s2, n2
