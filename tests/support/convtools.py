"""Shared constants and helpers of the converter tests (a unique module name: test folders share sys.path)."""

from __future__ import annotations

import os

from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "converters"


def update_golden() -> bool:
    return bool(os.environ.get("SOLARBRIDGE_UPDATE_GOLDEN"))
