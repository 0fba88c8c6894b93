"""Shared constants and helpers of the converter tests (a unique module name: test folders share sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "converters"


def update_golden() -> bool:
    return bool(os.environ.get("SOLARBRIDGE_UPDATE_GOLDEN"))
