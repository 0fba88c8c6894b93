"""/api/energy and /api/sites over 7 days of synthetic history that went the real way:
synthetic source (back-fill) -> counter hygiene -> sites -> history store.

The oracle for each day's PV energy is the synthetic device's own daily counter (``pv_energy_today_wh``
at its last reading of the day), which the site totals and the energy view never read.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from solarbridge.api.app import create_app
from solarbridge.config import build
from solarbridge.runtime import Supervisor
from solarbridge.sinks.history.sink import HistoryStore
from support.api import client_for, run

DAYS = 7
INTERVAL = 300


def backfill(state_dir, days=DAYS, interval=INTERVAL):
    """Run the daemon's pipeline over ``days`` of back-filled synthetic readings into the history store."""
    cfg = build({"daemon": {"state_dir": str(state_dir), "history": True, "shutdown_timeout": 5},
                 "sites": [{"name": "home", "devices": ["synthetic-home"], "timezone": "UTC"}],
                 "sources": [{"type": "synthetic", "interval": interval, "backfill": f"{days}d", "seed": 5,
                              "count": days * 86400 // interval}]})

    async def go():
        sup = Supervisor(cfg)
        sup.build()
        await sup.start()
        await sup.wait_sources()
        await sup.stop()

    asyncio.run(go())
    return state_dir / "history.sqlite"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return backfill(tmp_path_factory.mktemp("energy"))


def device_daily_pv(path):
    """The synthetic device's own pv_energy_today_wh at the last reading of each UTC day."""
    store = HistoryStore(path, readonly=True)
    pts = store.query("synthetic-home", "pv_energy_today_wh", datetime(2000, 1, 1, tzinfo=UTC))
    store.close()
    out: dict[str, float] = {}
    for t, v in pts:
        out[t.date().isoformat()] = v
    return out


def api(path, url, sup=None):
    store = HistoryStore(path, readonly=True)
    sup = sup or Supervisor(build({"daemon": {"state_dir": str(path.parent), "history": False}}))

    async def go():
        async with client_for(create_app(sup, history=store)) as c:
            return await c.get(url)

    try:
        return run(go())
    finally:
        store.close()


def test_daily_energy_matches_the_devices_own_daily_counter(history):
    r = api(history, "/api/energy?site=home&by=day&since=8d&tz=UTC")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["site"] == "home" and body["device_id"] == "site:home" and body["unit"] == "kWh"
    days = {p["start"][:10]: p["kwh"] for p in body["periods"]}
    truth = device_daily_pv(history)
    full = sorted(truth)[1:-1]  # the first and last days are partial
    assert len(full) >= DAYS - 2
    for d in full:
        assert days[d]["pv"] == pytest.approx(truth[d] / 1000, abs=0.002), d
    for p in body["periods"]:
        k = p["kwh"]
        if k["pv"] is None:
            continue
        assert min(v for v in k.values() if v is not None) >= 0
        # the site balances in energy too: load = pv + import - export + discharge - charge
        assert k["load"] == pytest.approx(k["pv"] + k["import"] - k["export"] + k["discharge"] - k["charge"],
                                          abs=0.01)
        assert k["self_consumption"] == pytest.approx(k["pv"] - k["export"], abs=0.01)


def test_months_and_years_add_up_to_the_days(history):
    days = api(history, "/api/energy?site=site:home&by=day&since=30d&tz=UTC").json()
    months = api(history, "/api/energy?site=home&by=month&since=30d&tz=UTC").json()
    years = api(history, "/api/energy?site=home&by=year&tz=UTC").json()
    for flow in ("pv", "import", "export", "load"):
        # each period is rounded to the Wh: a month of days may differ by half a Wh per day
        assert months["totals"][flow] == pytest.approx(days["totals"][flow], abs=0.0005 * 31)
        assert years["totals"][flow] == pytest.approx(days["totals"][flow], abs=0.0005 * 31)
    assert len(years["periods"]) == 5 and len(months["periods"]) in (2, 3)


def test_bad_requests_are_400_naming_the_field(history):
    r = api(history, "/api/energy?site=home&by=week")
    assert r.status_code == 400 and r.json()["detail"] == "by: must be one of day, month, year (got 'week')"
    r = api(history, "/api/energy?site=home&tz=Mars/Base")
    assert r.status_code == 400 and r.json()["detail"].startswith("tz: unknown time zone 'Mars/Base'")
    r = api(history, "/api/energy?site=home&since=now&until=1d")
    assert r.status_code == 400 and r.json()["detail"].startswith("since: must be before until")
    r = api(history, "/api/energy?site=home&by=day&since=20000d")
    assert r.status_code == 400 and "more than 1200 days" in r.json()["detail"]
    r = api(history, "/api/energy?site=garage")
    assert r.status_code == 404 and r.json()["detail"] == "site: no energy history for site 'garage' (known: home)"
    r = api(history, "/api/energy")
    assert r.status_code == 400 and r.json()["detail"].startswith("site:")


def test_sites_lists_history_sites(history):
    r = api(history, "/api/sites")
    assert r.status_code == 200
    assert [s["name"] for s in r.json()] == ["home"]


def test_history_cli_energy(history):
    cmd = [sys.executable, "-m", "solarbridge.cli.main", "history", "--db", str(history), "--energy"]
    out = subprocess.run(cmd + ["--site", "home", "--by", "day", "--since", "8d", "--tz", "UTC", "--format", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    truth = device_daily_pv(history)
    by_day = {r["day"]: r for r in rows}
    for d in sorted(truth)[1:-1]:
        assert by_day[d]["pv_kwh"] == pytest.approx(truth[d] / 1000, abs=0.002)
    table = subprocess.run(cmd + ["--site", "home", "--by", "month", "--tz", "UTC"], capture_output=True, text=True)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["month", "pv_kwh", "import_kwh"]
    listing = subprocess.run(cmd, capture_output=True, text=True)
    assert listing.stdout.split() == ["site", "home"]
    bad = subprocess.run(cmd + ["--site", "home", "--by", "week"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--by" in bad.stderr
    unknown = subprocess.run(cmd + ["--site", "shed"], capture_output=True, text=True)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "solarbridge history: --site: no energy history for site 'shed' (known: home)"
