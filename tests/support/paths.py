"""Where things are, for every test: the repository, its src/, tests/ and the recorded data."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
SRC = REPO / "src"
DATA = TESTS / "data"
