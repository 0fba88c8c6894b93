"""The dashboard shows a three-phase inverter's per-phase figures and its HV modules' cells (headless
chromium on a daemon polling the GivEnergy simulator's three-phase model). Screenshot in artifacts/api/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servers import free_port, wait_for
from support.live import LiveDaemon
from support.paths import REPO

pytestmark = pytest.mark.browser

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = REPO / "artifacts" / "api"


@pytest.fixture
def browser(tmp_path: Path):
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


def test_three_phase_and_cells_on_the_dashboard(tmp_path: Path, browser) -> None:
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "solarbridge.sources.givenergy.simulator", "--model", "3ph",
                            "--batteries", "2", "--port", str(port), "--serial", "TC2337G123"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None and "listening" in sim.stdout.readline()
        src = {"type": "givenergy", "name": "ge3", "host": "127.0.0.1", "port": port, "poll_interval": 1,
               "request_gap": 0}
        with LiveDaemon(tmp_path, sources=[src], history=False) as d:
            drv = browser
            drv.get(d.url + "/")
            card_sel = '[data-device="TC2337G123"]'
            # the card is redrawn on every reading: read and click it in one script each time
            js = (f"const c = document.querySelector('{card_sel}'); if (!c) return null; "
                  "return {sections: [...c.querySelectorAll('details.more')].map((e) => [e.querySelector('summary')"
                  ".textContent, e.open]), phases: [...c.querySelectorAll('table.phases tr th:first-child')]"
                  ".map((e) => e.textContent), cells: [...c.querySelectorAll('.cells')].map((e) => e.textContent)};")
            got = wait_for(lambda: (r := drv.execute_script(js)) and len(r["sections"]) == 2 and r, 30,
                           "phase and cell sections", interval=0.1)
            assert [t for t, _ in got["sections"]] == ["Phases", "Cells (2 units)"]
            drv.execute_script(f"document.querySelectorAll('{card_sel} details.more summary')"
                               ".forEach((s) => s.click());")
            # the sections stay open across the live redraws of the card
            wait_for(lambda: drv.execute_script(js)["phases"], 10, "phase rows", interval=0.1)
            first = drv.execute_script(js)
            wait_for(lambda: drv.execute_script(js)["cells"] != first["cells"] or
                     drv.execute_script(js)["phases"] == first["phases"], 5, "a redraw", interval=0.5)
            got = drv.execute_script(js)
            assert all(is_open for _, is_open in got["sections"])
            assert got["phases"] == ["", "L1", "L2", "L3"]
            assert [c.split(" ")[0] + " " + c.split(" ")[1] for c in got["cells"]] == ["Module 1", "Module 2"]
            assert all("24 cells" in c and " V" in c for c in got["cells"])
            card = drv.find_element("css selector", card_sel)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            drv.execute_script("arguments[0].scrollIntoView({block: 'start'})", card)
            drv.save_screenshot(str(ARTIFACTS / "dashboard-three-phase-cells.png"))
    finally:
        sim.terminate()
        sim.wait(10)
