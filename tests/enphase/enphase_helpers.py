"""Shared bits of the enphase tests."""

from __future__ import annotations

from pathlib import Path

from solarbridge.sources.enphase.nut import parse_line

DATA = Path(__file__).resolve().parent.parent / "data" / "enphase"
FIXTURES = DATA / "pyenphase"
EXAMPLE = DATA / "example"


def port_values(text: str) -> dict[str, str]:
    return dict(parse_line(line) for line in text.splitlines() if line.strip())


def example_settings(name: str) -> str:
    """A TEST_* value of the example test.conf."""
    from solarbridge.sources.enphase import conffile

    return conffile.parse((EXAMPLE / "test.conf").read_text(), {})[name]
