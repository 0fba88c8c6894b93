"""pickle2graphite: send semonitor JSON lines to Carbon's pickle port (2004), one batch per JSON line.

Same metrics, paths and timestamps as ``se2graphite``; see :mod:`solarbridge.cli.se2graphite`.
"""

from __future__ import annotations

import sys

from .se2graphite import tool_main


def main(argv: list[str] | None = None) -> int:
    return tool_main("pickle", argv)


if __name__ == "__main__":
    sys.exit(main())
