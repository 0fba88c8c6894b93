"""The dashboard's Health table with components in error, in headless Chromium (issue 17 item 19).

A GivEnergy source and a Graphite sink point at closed loopback ports, so both have a last error. At
1280 px and on a phone, the error text must be on screen in full: not hidden, not cut by the card or the
table's scroll box, and no column header ("Backlog") cut either.
"""

from __future__ import annotations

import httpx
import pytest
from test_browser import ARTIFACTS, NOT_YET
from test_browser import browser as browser  # noqa: F401  (the fixture, shared)

from servers import free_port, wait_for
from support.live import LiveDaemon

pytestmark = pytest.mark.browser

# every cell/header, and the text inside each error cell, must lie within its card and the table's scroll box
OFF_SCREEN = """
const out = [];
const check = (e, r, what) => {
  const card = e.closest('.card').getBoundingClientRect();
  const wrap = e.closest('.table-wrap').getBoundingClientRect();
  const left = Math.max(card.left, wrap.left), right = Math.min(card.right, wrap.right);
  const style = getComputedStyle(e);
  if (r.width === 0 || r.height === 0 || style.visibility !== 'visible' || style.display === 'none')
    out.push(what + ': hidden');
  else if (r.left < left - 0.5 || r.right > right + 0.5)
    out.push(what + ': ' + Math.round(r.left) + '..' + Math.round(r.right) + ' outside ' + Math.round(left) +
             '..' + Math.round(right));
};
// a phone leaves out the Dropped column on purpose (display: none); every other header must show
for (const e of document.querySelectorAll('#health th'))
  if (getComputedStyle(e).display !== 'none') check(e, e.getBoundingClientRect(), e.textContent);
for (const e of document.querySelectorAll('#health tr.err-row td')) {
  check(e, e.getBoundingClientRect(), 'error cell');
  const range = document.createRange();
  range.selectNodeContents(e);
  // each line box of the text, so a long word running out of the cell is caught too
  for (const r of range.getClientRects()) check(e, r, 'error text "' + e.textContent.slice(0, 40) + '"');
}
const w = document.querySelector('.health-card .table-wrap');
if (w.scrollWidth > w.clientWidth) out.push('table scrolls sideways: ' + w.scrollWidth + ' > ' + w.clientWidth);
return out;
"""


def errors_shown(drv) -> dict[str, str]:
    """Component name -> the text of the error row that follows its row."""
    return drv.execute_script("""
        const out = {};
        for (const r of document.querySelectorAll('#health tr.err-row')) {
          const owner = r.previousElementSibling;
          out[owner.dataset.component] = r.querySelector('td.err').textContent;
        }
        return out;""")


def test_last_error_is_visible_at_1280_and_on_a_phone(tmp_path, browser):
    ge_port, carbon_port = free_port(), free_port()  # nothing listens on either
    sources = [{"type": "synthetic", "interval": 1, "seed": 2},
               {"type": "givenergy", "name": "ge-down", "host": "127.0.0.1", "port": ge_port, "poll_interval": 1}]
    sinks = [{"type": "graphite", "name": "carbon-down", "host": "127.0.0.1", "port": carbon_port, "timeout": 2,
              "confirm_interval": 1, "spool": "memory"}]
    with LiveDaemon(tmp_path, sources=sources, history=False, extra={"sinks": sinks}) as d:
        def api_errors() -> dict[str, str]:
            comps = httpx.get(d.url + "/api/health", timeout=10).json()["components"]
            return {c["name"]: c["last_error"] for c in comps if c["last_error"]}

        errs = wait_for(lambda: (e := api_errors()) and {"ge-down", "carbon-down"} <= e.keys() and e, 30,
                        "both components to report their error")
        assert str(ge_port) in errs["ge-down"] and str(carbon_port) in errs["carbon-down"], errs

        drv = browser
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for width, height, shot in ((1280, 1000, "health-errors-1280.png"), (390, 1800, "health-errors-phone.png")):
            drv.set_window_size(width, height)
            drv.get(d.url + "/")
            shown = wait_for(lambda: (s := errors_shown(drv)) and {"ge-down", "carbon-down"} <= s.keys() and s,
                             20, f"error rows at {width} px", ignore=NOT_YET)
            # the row says what the API says (plus since when), under the component it belongs to
            for name in ("ge-down", "carbon-down"):
                assert shown[name].startswith(api_errors()[name].split(":")[0]), (name, shown[name])
                assert f"127.0.0.1:{ge_port if name == 'ge-down' else carbon_port}" in shown[name]
            drv.execute_script("document.querySelector('.health-card').scrollIntoView()")
            drv.save_screenshot(str(ARTIFACTS / shot))
            assert drv.execute_script(OFF_SCREEN) == [], f"at {width} px"
            heads = [e.text for e in drv.find_elements("css selector", "#health th") if e.is_displayed()]
            assert "Backlog" in heads and len(heads) == (5 if width > 600 else 4), heads
            for cell in drv.find_elements("css selector", "#health tr.err-row td"):
                assert cell.is_displayed()
