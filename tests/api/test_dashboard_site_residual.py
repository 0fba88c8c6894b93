"""The dashboard's power flow for sites, in headless Chromium (issue 14 item 2): a site whose measured load
disagrees with pv + grid + battery shows the residual with its value and unit; a balanced site shows none."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.support.ui import Select
from test_browser import NOT_YET, attr
from test_browser import browser as browser  # noqa: F401  (the fixture, shared)

from servers import wait_for
from support.api import reading
from support.live import LiveDaemon

pytestmark = pytest.mark.browser

# a gateway measuring every flow itself; its load meter reads 250 W less than what flows in
SHED = {"pv_power_w": 3000.0, "grid_power_w": 400.0, "battery_power_w": -200.0, "load_power_w": 2950.0}


def show_site(drv, site: str) -> None:
    wait_for(lambda: site in [o.get_attribute("value") for o in drv.find_elements("css selector", "#flow-site option")],
             20, f"{site} in the site list", ignore=NOT_YET)
    Select(drv.find_element("id", "flow-site")).select_by_value(site)


def test_flow_shows_the_residual_of_a_site_whose_measured_flows_disagree(tmp_path, browser):
    sites = [{"name": "home", "devices": ["synthetic-home"]},
             {"name": "shed", "grid": "shed-gw", "pv": "shed-gw", "battery": "shed-gw", "load": "shed-gw"}]
    src = {"type": "synthetic", "interval": 300, "seed": 4}
    with LiveDaemon(tmp_path, sources=[src], history=False, extra={"sites": sites}) as d:
        drv = browser
        drv.get(d.url + "/")
        wait_for(lambda: attr(drv, "conn", "data-state") == "live", 20, "live event stream", ignore=NOT_YET)
        d.publish(reading("shed-gw", time.time(), SHED, dtype="gateway", source="shed"))
        show_site(drv, "site:shed")
        wait_for(lambda: attr(drv, "flow-home-w", "data-w") == "2950", 10, "the shed's measured load",
                 ignore=NOT_YET)
        expected = SHED["pv_power_w"] + SHED["grid_power_w"] + SHED["battery_power_w"] - SHED["load_power_w"]
        res = drv.find_element("id", "flow-residual")
        assert res.text == f"residual {expected:.0f} W"
        assert res.get_attribute("data-w") == f"{expected:.0f}"
        assert res.is_displayed()
        assert f"= {expected:.0f} W" in drv.find_element("id", "flow-note").text

        # the synthetic home keeps its balance: its site shows no residual
        show_site(drv, "site:home")
        wait_for(lambda: attr(drv, "flow-home-w", "data-w") not in ("", "2950"), 10, "the home's load",
                 ignore=NOT_YET)
        assert drv.find_element("id", "flow-residual").text == ""
        assert "disagree" not in drv.find_element("id", "flow-note").text
