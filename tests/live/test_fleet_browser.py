"""The fleet centre's pages in a real browser: Debian's Chromium under Playwright, against a real
gunicorn serving ``webapp.fleet:create_app()``, with real node databases whose real notifiers
report to it over loopback (the demo's simulated fleet, webapp/fleet/demo_nodes.py).

Each test checks, at its end, that no page logged a console error, threw, got a 5xx or violated
the Content-Security-Policy. ``SAVE_SCREENSHOTS=1`` writes docs/screenshots/fleet*.png.
"""

import json
import time
from collections import Counter

import pytest
from browser_support import (
    STEP_MS,
    BrowserProblems,
    browser_test,
    expect_no_sideways_scroll,
    save_screenshot,
)
from fleetlib import FLEET_SECRET, FleetServer
from live import request
from playwright.sync_api import expect

from webapp.fleet.demo_nodes import DemoFleet

POLL_SECONDS = 1.0
HEARTBEAT = 5  # the shortest a node may ask for: a silent node is stale after 15 s
NODES = 8
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# A change made on a node reaches the page: the notifier's watch (0.5 s), its report, one poll,
# the swap; with a margin for a busy machine.
REACHES_THE_PAGE_MS = 12_000
STALE_MS = (3 * HEARTBEAT + 15) * 1000


@pytest.fixture(scope="module")
def centre(tmp_path_factory):
    folder = tmp_path_factory.mktemp("centre")
    server = FleetServer(
        folder / "fleet.db", folder / "state.db", env={"PIPELINE_POLL_SECONDS": str(POLL_SECONDS)}
    )
    with server:
        yield server


def summary(centre) -> dict:
    status, _, body = request(centre.url + "/api/fleet/summary")
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def fleet(centre, tmp_path_factory):
    """Eight nodes reporting for real; the last falls silent, the one before it breaks."""
    nodes = DemoFleet(tmp_path_factory.mktemp("nodes"), NODES, centre.url, FLEET_SECRET, HEARTBEAT)
    nodes.seed_history()
    nodes.start()
    try:
        deadline = time.monotonic() + 30
        while summary(centre)["nodes"] < NODES:  # polled: the first reports arrive by themselves
            assert time.monotonic() < deadline, "the nodes' first reports never arrived"
            time.sleep(0.2)
        nodes.quieten_and_break()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def browser(chromium, centre):
    problems = BrowserProblems()
    contexts = []

    def open_page(viewport=VIEWPORT):
        context = chromium.new_context(base_url=centre.url, viewport=viewport)
        context.set_default_timeout(STEP_MS)
        problems.attach(context)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
    problems.assert_clean()


def node_row(page, name):
    return page.locator(f'#nodes tr[data-node="{name}"]')


@browser_test
def test_filters_narrow_the_table_and_a_node_opens_its_page(browser, fleet):
    page = browser()
    page.goto("/")
    expect(page.locator("#fleet-total")).to_have_text(f"{NODES} nodes")
    expect(page.locator("#nodes tbody tr")).to_have_count(NODES)
    expect(page.locator("#mix rect.seg").first).to_be_visible()

    page.locator("#selector").fill("region=eu")
    with page.expect_navigation():
        page.locator("#apply-filter").click()
    assert "selector=region%3Deu" in page.url
    eu = [node.name for node in fleet.nodes if node.target.labels["region"] == "eu"]
    expect(page.locator("#nodes tbody tr")).to_have_count(len(eu))
    for name in eu:
        expect(node_row(page, name)).to_be_visible()
    expect(page.locator("#selector")).to_have_value("region=eu")

    page.locator("#pipeline_type").select_option("raw")
    with page.expect_navigation():
        page.locator("#apply-filter").click()
    for row in page.locator("#nodes tbody tr").all():
        expect(row.locator(".type")).to_have_text("raw")
        expect(row.locator("code").first).to_have_text("region=eu")
    with page.expect_navigation():
        page.locator("#clear-filter").click()
    expect(page.locator("#nodes tbody tr")).to_have_count(NODES)

    first = fleet.nodes[0]
    with page.expect_navigation():
        node_row(page, first.name).locator("a.node-name").click()
    expect(page.locator("#page-heading")).to_have_text(first.name)
    history = first.store.history(50)
    expect(page.locator("#node-history li[data-change-id]")).to_have_count(len(history))
    expect(page.locator("#current")).to_have_attribute(
        "data-pipeline-type", first.store.current().pipeline_type
    )
    expect(page.locator("#timeline figure")).to_have_count(
        3
    )  # the last hour, 24 hours and 7 days, as on the node
    save_screenshot(page, "fleet-node")


@browser_test
def test_a_change_on_a_node_appears_live_and_quiet_polls_change_nothing(browser, fleet):
    page = browser()
    answers = Counter()
    page.on("response", lambda r: "/poll" in r.url and answers.update([r.status]))
    page.goto("/")
    node = fleet.nodes[1]
    row = node_row(page, node.name)
    before = node.store.current().pipeline_type
    expect(row.locator(".type")).to_have_text(before)
    since = page.locator("#since").get_attribute("value")
    # Heartbeats keep arriving: polls answer 204 and the page stays as it is.
    with page.expect_response(lambda r: "/poll" in r.url and r.status == 204):
        pass
    target = next(t for t in ("filtered", "aggregated", "schematized") if t != before)
    node.change(target, "carol")  # through the node's own store, as its CLI would
    expect(row.locator(".type")).to_have_text(target, timeout=REACHES_THE_PAGE_MS)
    expect(row.locator(".who")).to_have_text("carol")
    expect(page.locator("#since")).not_to_have_attribute("value", since)
    expect(page.locator("#announcer")).to_contain_text("Fleet updated")
    assert answers[204] >= 1 and answers[200] >= 1, answers


@browser_test
def test_a_silent_node_turns_stale_and_a_broken_one_shows_its_error(browser, fleet):
    page = browser()
    page.goto("/")
    expect(node_row(page, fleet.broken.name)).to_have_attribute(
        "data-state", "error", timeout=REACHES_THE_PAGE_MS
    )
    expect(node_row(page, fleet.broken.name)).to_contain_text("not an SQLite database")
    # Nothing is written when a node falls silent: the page learns it from its poll.
    expect(node_row(page, fleet.stale.name)).to_have_attribute(
        "data-state", "stale", timeout=STALE_MS
    )
    expect(page.locator('#by-state li[data-state="stale"]')).to_have_attribute("data-count", "1")
    save_screenshot(page, "fleet")  # the README's picture: what `fleet demo` shows
    page.locator('#by-state li[data-state="stale"] a').click()
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(node_row(page, fleet.stale.name)).to_be_visible()


@browser_test
def test_phone_width_nothing_scrolls_sideways(browser, fleet):
    page = browser(PHONE)
    for path in ("/", "/?state=error", f"/nodes/{fleet.nodes[0].name}",
                 f"/nodes/{fleet.broken.name}", "/?selector=region%3Dnowhere"):  # fmt: skip
        page.goto(path)
        expect(page.locator("#page-heading")).to_be_visible()
        expect_no_sideways_scroll(page, path)
    page.goto("/")
    expect(page.locator("#nodes tbody tr").first).to_be_visible()
    save_screenshot(page, "fleet-phone")
