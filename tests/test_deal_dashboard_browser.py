"""End to end: notebook 16's deal dashboard in a real headless Chromium.

Runs the notebook's dashboard cell (tests/notebook_cells.py) over a memory file made here, launches it on
127.0.0.1, and checks in the browser that the deals table, the agent log and the plot show what memory holds,
and that Refresh picks up a deal written after the page loaded (by another writer, as the agents are).
"""

from __future__ import annotations

import pytest

from course_utils.agents import deals
from notebook_cells import cell_namespace
from test_rag_app_browser import browser  # noqa: F401 (the same headless Chromium fixture)

pytestmark = pytest.mark.slow

LAMP = deals.DealEntry("deal-lamp", "Brass desk lamp", 12.0, "vintage", ("Home",), None, "Good")
BOOTS = deals.DealEntry("deal-boots", "Dr. Martens boots size 9", 40.0, "barely worn", ("Women", "Shoes"), "Dr. Martens", "Like new")
LEGO = deals.DealEntry("deal-lego", "LEGO Millennium Falcon 75257", 55.0, "complete", ("Kids", "Toys"), "LEGO", "Good")


@pytest.fixture
def dashboard_url(tmp_path):
    from course_utils.chat import apps

    memory = deals.DealMemory(tmp_path / "memory.sqlite")
    memory.remember([LAMP, BOOTS], run_id="run-1")
    memory.save_estimate(LAMP.entry_id, "ensemble", 30.0)
    memory.save_estimate(BOOTS.entry_id, "ensemble", 42.0)
    memory.record_alert(LAMP, 30.0, "Brass lamp at 60% off", run_id="run-1")
    memory.set_status(BOOTS.entry_id, "priced")
    memory.log("planner", "deal-lamp: 60% off -> alert", run_id="run-1")
    app = cell_namespace("16_deal_agents.ipynb", "gr.Blocks(", memory=memory, threshold=0.25)["dashboard"]
    url = apps.launch(app)
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url, memory
    finally:
        apps.close(app)


def test_dashboard_shows_memory_and_refreshes_in_a_real_browser(browser, dashboard_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, memory = dashboard_url
    browser.get(url)

    def text_of(selector):
        return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, selector))

    WebDriverWait(browser, 60).until(lambda d: "Brass desk lamp" in text_of("#deals-table"))
    table = text_of("#deals-table")
    assert "Dr. Martens boots size 9" in table and "LEGO" not in table
    WebDriverWait(browser, 30).until(lambda d: "60% off -> alert" in text_of("#agent-log"))
    # the plot is a matplotlib figure, sent to the page as an image
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#deal-plot img, #deal-plot svg, #deal-plot canvas"))

    memory.remember([LEGO], run_id="run-2")  # the agents find another deal while the page is open
    memory.save_estimate(LEGO.entry_id, "ensemble", 120.0)
    memory.record_alert(LEGO, 120.0, "Falcon at half price", run_id="run-2")
    memory.log("messenger", "alert deal-lego: Falcon at half price", run_id="run-2")
    assert "LEGO" not in text_of("#deals-table")
    browser.find_element(By.CSS_SELECTOR, "#refresh").click()
    WebDriverWait(browser, 60).until(lambda d: "LEGO Millennium Falcon 75257" in text_of("#deals-table"))
    WebDriverWait(browser, 30).until(lambda d: "Falcon at half price" in text_of("#agent-log"))
