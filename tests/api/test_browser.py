"""The dashboard in a real browser (Debian chromium + chromedriver, headless) on a running daemon.

The daemon runs the synthetic source (7 days of history backfilled) and the web service on a loopback port.
Screenshots go to artifacts/api/ (gitignored).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import WebDriverException

from servers import wait_for
from support.api import reading
from support.live import LiveDaemon
from support.paths import REPO

pytestmark = pytest.mark.browser

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = REPO / "artifacts" / "api"


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("chromium / chromium-driver not installed (scripts/install-test-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome'}",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


#: what a page probe raises while the page is not there yet: selenium's no-such-element, stale element and
#: no-alert errors, int() of an attribute that is still empty or absent
NOT_YET = (WebDriverException, ValueError, TypeError)


def attr(drv, element_id, name):
    return drv.find_element("id", element_id).get_attribute(name)


def click(drv, element):
    # centre the element first: the sticky header would otherwise sit on top of it
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def set_control(drv, device, name, value):
    card = drv.find_element("css selector", f'[data-device="{device}"]')
    details = card.find_element("css selector", "details.controls")
    if details.get_attribute("open") is None:
        click(drv, details.find_element("tag name", "summary"))
    form = card.find_element("css selector", f'form[data-control="{name}"]')
    box = form.find_element("name", "value")
    box.clear()
    box.send_keys(value)
    click(drv, form.find_element("css selector", "button"))
    return form


def test_dashboard_live_flow_history_and_offline(tmp_path, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    src = {"type": "synthetic", "interval": 300, "backfill": "7d", "utc_offset_h": 2, "seed": 3}
    with LiveDaemon(tmp_path, sources=[src]) as d:
        drv = browser
        drv.get(d.url + "/")
        wait_for(lambda: attr(drv, "conn", "data-state") == "live", 15, "live event stream", ignore=NOT_YET)
        wait_for(lambda: attr(drv, "flow-home-w", "data-w") != "",
                 15, "first power-flow numbers", ignore=NOT_YET)
        before = int(attr(drv, "flow-home-w", "data-w"))

        # the card's control form sets 4 kW of extra load; the synthetic home emits a new reading at once
        form = set_control(drv, "synthetic-home", "extra_load_w", "4000")
        sent = time.monotonic()
        wait_for(lambda: int(attr(drv, "flow-home-w", "data-w")) >= before + 3000,
                 5, "home load to rise after the reading", ignore=NOT_YET)
        latency = time.monotonic() - sent
        print(f"power flow updated {latency * 1000:.0f} ms after the control was submitted")
        wait_for(lambda: "extra_load_w set" in form.find_element("css selector", ".ctl-msg").text,
                 5, "control confirmation", ignore=NOT_YET)
        text = drv.find_element("id", "flow-home-w").text
        assert "kW" in text

        # a simulated reading injected on the bus shows up as typed, with direction
        d.publish(reading("synthetic-home", time.time(), {"pv_power_w": 1234.0, "grid_power_w": -777.0,
                                                          "battery_power_w": -456.0, "load_power_w": 1.0},
                          dtype="synthetic", source="synthetic"))
        wait_for(lambda: attr(drv, "flow-pv-w", "data-w") == "1234", 5, "pv 1234 W", ignore=NOT_YET)
        assert attr(drv, "flow-grid-w", "data-w") == "-777"
        assert drv.find_element("id", "flow-grid-dir").text == "exporting"
        assert drv.find_element("id", "flow-battery-dir").text == "charging"
        assert "rev" in attr(drv, "link-grid", "class")  # export animates hub -> grid

        # history: 24 h is the default; switch to 7 d and 1 h
        wait_for(lambda: int(attr(drv, "plot", "data-points")) > 0, 20, "24 h history plot", ignore=NOT_YET)
        click(drv, drv.find_element("css selector", '.ranges button[data-range="604800"]'))
        wait_for(lambda: attr(drv, "plot", "data-range") == "604800" and int(attr(drv, "plot", "data-points")) > 100,
                 20, "7 d history plot", ignore=NOT_YET)
        note7 = drv.find_element("id", "hist-note").text
        drv.save_screenshot(str(ARTIFACTS / "dashboard-desktop-7d.png"))
        click(drv, drv.find_element("css selector", '.ranges button[data-range="3600"]'))
        wait_for(lambda: attr(drv, "plot", "data-range") == "3600", 10, "1 h history plot", ignore=NOT_YET)
        assert drv.find_element("css selector", '.ranges button[data-range="3600"]').get_attribute(
            "aria-pressed") == "true"
        print("7 d plot:", note7)

        # health panel lists the running components
        wait_for(lambda: drv.find_elements("css selector", '#health tr[data-component="history"]'),
                 15, "health rows", ignore=NOT_YET)

        # phone width: nothing wider than the screen
        drv.set_window_size(390, 1600)
        time.sleep(0.3)
        overflow = drv.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
        drv.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
        drv.set_window_size(1400, 1000)

        # the device goes offline: its card says so and the flow is marked out of date
        d.publish(reading("synthetic-home", time.time(), {}, online=False, dtype="synthetic", source="synthetic"))
        wait_for(lambda: drv.find_element("css selector", '[data-device="synthetic-home"]').get_attribute(
            "data-status") == "offline", 5, "offline card", ignore=NOT_YET)
        assert "OFFLINE" in drv.find_element("css selector", '[data-device="synthetic-home"] .badge').text.upper()
        assert "out of date" in drv.find_element("id", "flow-note").text
        drv.save_screenshot(str(ARTIFACTS / "dashboard-offline.png"))
        logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not logs, logs
    assert (ARTIFACTS / "dashboard-desktop-7d.png").stat().st_size > 10_000


def test_dashboard_control_asks_for_the_token(tmp_path, browser):
    src = {"type": "synthetic", "interval": 300}
    with LiveDaemon(tmp_path, sources=[src], api={"token": "t0ken"}) as d:
        drv = browser
        drv.get(d.url + "/")
        wait_for(lambda: drv.find_elements("css selector", '[data-device="synthetic-home"] details.controls'),
                 15, "device card with controls", ignore=NOT_YET)
        form = set_control(drv, "synthetic-home", "battery_reserve_pct", "150")
        alert = wait_for(lambda: drv.switch_to.alert, 5, "token prompt", ignore=NOT_YET)
        assert "token" in alert.text
        alert.send_keys("t0ken")
        alert.accept()
        # the token is accepted; the device refuses the value and the card says why, naming the range
        wait_for(lambda: "from 4 to 100" in form.find_element("css selector", ".ctl-msg").text,
                 5, "range message", ignore=NOT_YET)
        form = set_control(drv, "synthetic-home", "battery_reserve_pct", "20")
        wait_for(lambda: "battery_reserve_pct set" in form.find_element("css selector", ".ctl-msg").text,
                 5, "control confirmation", ignore=NOT_YET)
        r = httpx.get(d.url + "/api/devices/synthetic-home/latest").json()
        assert r["metrics"]["battery_reserve_pct"] == 20


def test_health_panel_stops_saying_running_when_the_daemon_stops(tmp_path, browser):
    """Issue 17 item 21: header "reconnecting" and a Health panel with OK/RUNNING/"just now" never go together."""
    src = {"type": "synthetic", "interval": 1, "seed": 1}
    d = LiveDaemon(tmp_path, sources=[src]).__enter__()
    try:
        drv = browser
        drv.get(d.url + "/")
        wait_for(lambda: attr(drv, "conn", "data-state") == "live", 30, "live event stream", ignore=NOT_YET)
        wait_for(lambda: attr(drv, "health-status", "data-status") == "ok", 30, "health ok", ignore=NOT_YET)
        wait_for(lambda: drv.find_elements("css selector", "#health .badge.running"),
                 30, "a running component", ignore=NOT_YET)
    finally:
        d.stop()
    wait_for(lambda: attr(drv, "conn", "data-state") == "down",
             30, "header says reconnecting", ignore=NOT_YET)
    wait_for(lambda: attr(drv, "health-status", "data-status") == "down", 30, "health not ok", ignore=NOT_YET)
    time.sleep(2.5)  # ages keep growing: nothing can still read "just now"
    table = drv.find_element("id", "health").text.lower()
    assert "running" not in table and "just now" not in table, table
    assert drv.find_element("id", "health-status").text.upper() != "OK"
    assert "not answering" in drv.find_element("id", "health-summary").text


def test_energy_card_bars_for_seven_days_of_backfilled_history(tmp_path, browser):
    """The Energy card draws a bar per flow and day from /api/energy over 7 days of back-filled history
    (synthetic home -> counter hygiene -> site:home -> history), and switches to months."""
    src = {"type": "synthetic", "interval": 300, "backfill": "7d", "seed": 3}
    with LiveDaemon(tmp_path, sources=[src], extra={"sites": [{"name": "home", "devices": ["synthetic-home"]}]}) \
            as d:
        drv = browser
        wait_for(lambda: httpx.get(d.url + "/api/energy", params={"site": "home", "since": "8d"}).status_code == 200
                 and sum(1 for p in httpx.get(d.url + "/api/energy", params={"site": "home", "since": "8d"}).json()[
                     "periods"] if p["kwh"]["pv"]) >= 7, 30, "7 days of site energy in history")
        drv.get(d.url + "/")
        wait_for(lambda: attr(drv, "energy-site", "value") == "home",
                 20, "site in the energy card", ignore=NOT_YET)
        wait_for(lambda: int(attr(drv, "energy-chart", "data-periods")) >= 7,
                 20, "7 days of bars", ignore=NOT_YET)
        api = httpx.get(d.url + "/api/energy", params={"site": "home"}).json()
        rects = drv.find_elements("css selector", "#energy-chart rect.bar-pv")
        assert len(rects) == sum(1 for p in api["periods"] if p["kwh"]["pv"] is not None) >= 7
        # each bar is as tall as its kWh: heights in the same ratio as the API's values
        kwh = [float(r.get_attribute("data-kwh")) for r in rects]
        heights = [float(r.get_attribute("height")) for r in rects]
        big = max(range(len(kwh)), key=lambda i: kwh[i])
        for k, h in zip(kwh, heights, strict=True):
            assert h == pytest.approx(max(1.0 if k > 0 else 0.0, k / kwh[big] * heights[big]), rel=0.02, abs=0.6)
        assert int(attr(drv, "energy-chart", "data-bars")) >= 4 * 7 - 7  # solar, home, import, export (export may be 0)
        assert "kWh" in drv.find_element("id", "energy-note").text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drv.find_element("id", "energy-chart").screenshot(str(ARTIFACTS / "energy-days.png"))
        click(drv, drv.find_element("css selector", 'button[data-by="month"]'))
        wait_for(lambda: 1 <= int(attr(drv, "energy-chart", "data-periods")) <= 2,
                 10, "months", ignore=NOT_YET)
        assert attr(drv, "plot", "data-range") != "nan"  # the history card's range buttons are not touched
        logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not logs, logs
