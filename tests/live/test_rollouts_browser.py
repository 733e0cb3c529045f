"""Rollouts in a real browser (issue 18): Chromium under Playwright against the centre under
gunicorn (two workers). Alice creates a rollout; Bob, on a 390 px phone, approves it (two
approvals required); Alice starts it and watches the canary take without reloading; Bob pauses
it. No page logs an error, breaks the CSP or scrolls sideways."""

import json
import urllib.request

import pytest
from browser_support import (
    STEP_MS,
    BrowserProblems,
    expect_no_sideways_scroll,
    launch_chromium,
    save_screenshot,
    write_users_file,
)
from fleetlib import REPORT_URL, FleetServer, record, report, signed
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.browser]

OPERATORS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
POLL_SECONDS = 1.0
NODES = [f"edge-{n:03}" for n in range(6)]


@pytest.fixture
def centre(tmp_path):
    users = tmp_path / "users.htpasswd"
    write_users_file(users, OPERATORS)
    env = {
        "PIPELINE_USERS_FILE": str(users),
        "PIPELINE_POLL_SECONDS": str(POLL_SECONDS),
        "PIPELINE_FLEET_APPROVALS": "2",
    }
    server = FleetServer(tmp_path / "fleet.db", tmp_path / "centre.db", env=env)
    server.start()
    yield server
    server.stop()


class Node:
    """A node reporting over HTTP with signed reports (what the notifier sends)."""

    def __init__(self, centre, name):
        self.centre, self.name, self.seq = centre, name, 0
        self.change_id, self.type = 1, "raw"

    def report(self) -> dict:
        self.seq += 1
        body = report(self.name, current=record(self.change_id, self.type), seq=self.seq)
        body["accept_rollouts"] = True
        data, headers = signed(body)
        sent = urllib.request.Request(self.centre.url + REPORT_URL, data=data, headers=headers)
        with urllib.request.urlopen(sent, timeout=30) as answer:
            return json.loads(answer.read())


def log_in(page, name):
    page.goto("/login")
    page.locator("input[name=username]").fill(name)
    page.locator("input[name=password]").fill(OPERATORS[name])
    with page.expect_navigation():
        page.locator("button[type=submit]").click()
    assert "/login" not in page.url


def test_create_approve_on_a_phone_watch_and_pause(centre):
    nodes = {name: Node(centre, name) for name in NODES}
    for node in nodes.values():
        node.report()
    problems = BrowserProblems()
    with launch_chromium() as browser:
        desk = browser.new_context(base_url=centre.url, viewport=DESKTOP)
        phone = browser.new_context(base_url=centre.url, viewport=PHONE)
        for context in (desk, phone):
            context.set_default_timeout(STEP_MS)
            problems.attach(context)
        alice, bob = desk.new_page(), phone.new_page()
        log_in(alice, "alice")
        log_in(bob, "bob")

        alice.goto("/rollouts")
        alice.locator("#pipeline_type").select_option("filtered")
        alice.locator("#waves").fill("1, 100%")
        alice.locator("#reason").fill("EU canary <first>")
        with alice.expect_navigation():
            alice.locator("#create-rollout").click()
        expect(alice.locator("#rollout-status")).to_have_text("awaiting approval")
        expect(alice.locator("#waves li")).to_have_count(2)
        expect(alice.locator("#action-approve")).to_have_count(0)  # not its author's to approve
        url = alice.url

        bob.goto(url)
        expect_no_sideways_scroll(bob, "the rollout page at 390 px")
        bob.locator("#reason-approve").fill("canary looks right")
        with bob.expect_navigation():
            bob.locator("#action-approve").click()
        expect(bob.locator("#rollout-approvals")).to_contain_text("bob")

        # Alice's page learns of the approval by its poll, without a reload.
        expect(alice.locator("#rollout-status")).to_have_text("approved")
        with alice.expect_navigation():
            alice.locator("#action-start").click()
        expect(alice.locator("#rollout-status")).to_have_text("running")
        canary = alice.locator("#holding li").first.get_attribute("data-node")
        desired = nodes[canary].report()["desired"]
        nodes[canary].change_id += 1
        nodes[canary].type = desired["pipeline_type"]
        nodes[canary].report()
        expect(alice.locator("#waves li").first).to_have_attribute("data-taken", "1")
        expect(alice.locator("#audit li").first).to_have_attribute("data-action", "wave_start")
        save_screenshot(alice, "fleet-rollout")

        bob.goto(url)
        with bob.expect_navigation():
            bob.locator("#action-pause").click()
        expect(bob.locator("#rollout-status")).to_have_text("paused")
        expect_no_sideways_scroll(bob, "the paused rollout at 390 px")
        expect(alice.locator("#rollout-status")).to_have_text("paused")
        expect(alice.locator("#action-resume")).to_be_visible()
        assert "<first>" in alice.locator("#rollout-live .reason").first.inner_text()
        desk.close()
        phone.close()
    problems.assert_clean()
