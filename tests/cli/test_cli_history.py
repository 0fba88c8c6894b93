"""`solarbridge history --step`: bucket means written to a sensible precision, not as binary sums."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from solarbridge.model import Reading
from solarbridge.sinks.history.sink import HistoryStore, mean_of

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def test_mean_of_rounds_two_decimals_beyond_the_samples():
    values = [0.1, 0.2, 0.4]
    total = 0.0
    for v in values:
        total += v
    noisy = total / len(values)
    assert repr(noisy) == "0.23333333333333336"  # what a plain mean of the stored floats gives
    exact = sum(Decimal(repr(v)) for v in values) / len(values)
    got = mean_of(total, len(values), min(values), max(values))
    assert Decimal(repr(got)) == exact.quantize(Decimal("0.001"))  # samples have 1 decimal: mean has 3
    assert mean_of(2815, 3, 938, 939) == 938.33  # whole watts: mean to 0.01 W
    assert mean_of(7505.300000000001, 8, 937.9, 938.3) == 938.163


def test_history_step_means_as_written(tmp_path):
    db = tmp_path / "h.sqlite"
    store = HistoryStore(db)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    # 0.1 + 0.2 + 0.7 ... : sums that binary floats cannot hold exactly
    vals = [0.1, 0.2, 0.7, 0.1, 0.2, 0.7, 0.3, 0.3, 0.3]
    store.insert([Reading("d", "meter", t0 + timedelta(seconds=i), {"x_kwh": v}, source="t")
                  for i, v in enumerate(vals)])
    store.close()
    out = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "history", "--db", str(db), "--device", "d",
                          "--metric", "x_kwh", "--since", "2h", "--step", "1h", "--format", "json"],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert sum(r["count"] for r in rows) == len(vals)
    for r in rows:
        assert len(repr(r["mean"]).split(".")[-1]) <= 3, r  # one-decimal samples: at most 3 decimals
    expected = sum(Decimal(repr(v)) for v in vals) / len(vals)
    if len(rows) == 1:
        assert Decimal(repr(rows[0]["mean"])) == expected.quantize(Decimal("0.001"))


def test_bad_or_misplaced_step_is_one_line_and_exit_2(tmp_path):
    db = tmp_path / "h.sqlite"
    store = HistoryStore(db)
    store.insert([Reading("d", "meter", datetime.now(UTC), {"x_kwh": 1.5}, source="t")])
    store.close()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "history", "--db", str(db), *args],
                              capture_output=True, text=True, env=ENV, timeout=60)

    for step in ("0", "0s", "-5m", "40000d"):
        out = run("--device", "d", "--metric", "x_kwh", f"--step={step}")
        assert out.returncode == 2 and out.stdout == "", (step, out)
        assert out.stderr.count("\n") == 1 and "--step" in out.stderr and "1s to 36500d" in out.stderr, out.stderr
    # without --device/--metric the series are listed: a --step there would be silently ignored
    out = run("--step", "0")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--step need --device and --metric" in out.stderr
    out = run()
    assert out.returncode == 0 and "x_kwh" in out.stdout
