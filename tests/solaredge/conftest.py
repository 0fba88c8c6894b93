"""Hypothesis budget for this area: modest by default, heavy with SOLARBRIDGE_FUZZ=1 (make fuzz)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("SOLARBRIDGE_FUZZ") == "1"
settings.register_profile("solaredge", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("solaredge-fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
#: the framing fuzz test is cheap: it runs 10k examples even in CI
GARBAGE_EXAMPLES = 200_000 if FUZZ else 10_000
EXAMPLES = 20_000 if FUZZ else 200

DATA = Path(__file__).parent.parent / "data" / "solaredge"


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
