"""%.Nf as the original formats it: bash's printf parses the number into a long double, then rounds.

The oracle is bash itself (the original enphase-monitor is a bash script and formats with bash's
printf builtin), run once per batch on the same texts.
"""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sinks.nut.portfile import fmt, printf_f

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash (the original's printf)")


def bash_printf(places: int, texts: list[str]) -> list[str]:
    out = subprocess.run(["bash", "-c", f'LC_ALL=C printf "%.{places}f\\n" "$@"', "bash", *texts],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.splitlines()


def test_the_issue_example() -> None:
    assert fmt(0.765, 2) == "0.76"  # a correctly rounded double would give 0.77
    assert bash_printf(2, ["0.765"]) == ["0.76"]


def test_half_way_values_match_bash() -> None:
    """Every value that is half-way in decimal at 1 and 2 places, in the ranges the port file sees."""
    texts = [f"{sign}{i}.{d:02d}5" for sign in ("", "-") for i in (0, 1, 2, 10, 123, 3069) for d in range(100)]
    texts += [f"{sign}{i}.{d}5" for sign in ("", "-") for i in (0, 1, 59, 60, 124, 248) for d in range(10)]
    for places in (1, 2):
        assert [printf_f(t, places) for t in texts] == bash_printf(places, texts)


def test_random_meter_values_match_bash() -> None:
    rng = random.Random(20261205)
    texts = [f"{rng.uniform(-20000, 20000):.{rng.randint(0, 4)}f}" for _ in range(3000)]
    texts += [repr(rng.uniform(-1.5, 1.5)) for _ in range(1000)]  # power factors, full double repr
    for places in (1, 2):
        assert [printf_f(t, places) for t in texts] == bash_printf(places, texts)


@given(st.lists(st.decimals(min_value=-100000, max_value=100000, places=4, allow_nan=False), min_size=1,
                max_size=50))
def test_any_decimal_text_matches_bash(values: list) -> None:
    texts = [str(v) for v in values]
    assert [printf_f(t, 2) for t in texts] == bash_printf(2, texts)
