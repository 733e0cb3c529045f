"""Real-browser tests (issue 3): Debian's Chromium, driven by Playwright, against gunicorn.

One gunicorn (two workers, ``PIPELINE_POLL_SECONDS=1``) and one Chromium serve the module; each
test opens fresh browser contexts (one per operator) and checks, at its end, that no page logged a
console error, threw, was refused a server answer (5xx) or violated the Content-Security-Policy.

Element ids and attributes follow the dashboard's DOM contract (``#current``, ``#buckets``,
``#recent``, ``#change-form``, ``#confirm-form``, ``#conflict``, ``#live-status``, ...).

``SAVE_SCREENSHOTS=1`` also writes the README's screenshots to ``docs/screenshots/``.
"""

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM_ARGS,
    MISSING_CHROMIUM,
    SERVER_DOWN,
    BrowserProblems,
    BrowserServer,
    find_chromium,
    http_status,
    write_users_file,
)
from conftest import make_sensor_db
from live import ROOT
from playwright.sync_api import expect, sync_playwright

from webapp.pipelines import PIPELINE_TYPES
from webapp.store import PipelineStore

POLL_SECONDS = 1.0
# "Appears within one poll interval": one interval, plus a margin for the request, the swap and a
# busy CI machine. Measured from the moment the other process's write has returned.
WITHIN_ONE_POLL_MS = int((POLL_SECONDS + 2.5) * 1000)
STEP_MS = 10_000  # a page load or a form post
OPERATORS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOTS = ROOT / "docs" / "screenshots"
REASON = "Requested by the <north> site team (ticket OPS-42)"  # markup must stay text


def browser_test(test):
    """Mark a test as a (slow) browser test."""
    return pytest.mark.slow(pytest.mark.browser(test))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium under Playwright, shared by the module (skipped when not installed)."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(MISSING_CHROMIUM)
    expect.set_options(timeout=STEP_MS)  # Playwright's 5 s default is short on a loaded CI runner
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def make_server(directory: Path) -> BrowserServer:
    """A gunicorn (not started) on a fresh sensor database, with two operator accounts."""
    db = make_sensor_db(directory / "sensor_data.db")
    users = directory / "users.htpasswd"
    write_users_file(users, OPERATORS)
    return BrowserServer(
        db,
        workers=2,
        env={"PIPELINE_USERS_FILE": str(users), "PIPELINE_POLL_SECONDS": str(POLL_SECONDS)},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with make_server(tmp_path_factory.mktemp("dashboard")) as live:
        yield live


class Sessions:
    """Browser contexts of one test, each a separate operator (or an anonymous visitor)."""

    def __init__(self, browser, server):
        self.browser = browser
        self.server = server
        self.problems = BrowserProblems()
        self.contexts = []

    def open(self, operator=None, *, javascript=True):
        context = self.browser.new_context(
            base_url=self.server.url, viewport=VIEWPORT, java_script_enabled=javascript
        )
        context.set_default_timeout(STEP_MS)
        self.problems.attach(context)
        self.contexts.append(context)
        page = context.new_page()
        if operator:
            log_in(page, operator)
        return page

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture
def sessions(chromium, server):
    opened = Sessions(chromium, server)
    yield opened
    opened.close()


# -- helpers -----------------------------------------------------------------------------------


def current(server):
    """The current change, read straight from the database."""
    with PipelineStore(server.db_path) as store:
        return store.current()


def other_type(*avoid):
    return next(kind for kind in PIPELINE_TYPES if kind not in avoid)


def run_cli(server, *args):
    """Run ``flask pipeline`` in another process, as an operator's shell would."""
    command = [sys.executable, "-m", "flask", "--app", "webapp", "pipeline"]
    command += ["--db", server.db_path, *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def log_in(page, operator):
    page.goto("/login")
    page.locator("input[name=username]").fill(operator)
    page.locator("input[name=password]").fill(OPERATORS[operator])
    with page.expect_navigation():
        page.locator("button[type=submit]").click()
    errors = page.locator(".form-error").all_inner_texts()
    assert not errors, f"after logging in as {operator}, {page.url} shows: {errors}"
    assert "/login" not in page.url, f"still on the login page after logging in as {operator}"


def wait_for_polls(page, rounds):
    """Return once some polled fragment has been fetched ``rounds`` times (answers finished)."""
    fetched = Counter()

    def nth_poll(request):
        if request.method != "GET" or request.headers.get("hx-request") != "true":
            return False
        fetched[request.url] += 1
        return fetched[request.url] >= rounds

    timeout = int((rounds * POLL_SECONDS + 3) * 1000)
    page.wait_for_event("requestfinished", predicate=nth_poll, timeout=timeout)


def remaining_ms(deadline):
    return max(1, int((deadline - time.monotonic()) * 1000))


def save_screenshot(page, name):
    """Write docs/screenshots/NAME.png (full page, 1280 wide) when SAVE_SCREENSHOTS=1."""
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # caret="initial": hiding the caret leaves style="" on inputs, which htmx's settle step
        # then copies onto swapped-in elements, a CSP violation of the harness's own making.
        page.screenshot(
            path=SCREENSHOTS / f"{name}.png", full_page=True, animations="disabled", caret="initial"
        )


def review(page, pipeline_type, reason):
    """Fill the change form and press "Review change"; return the confirmation form."""
    form = page.locator("form#change-form")
    form.locator("select[name=pipeline_type]").select_option(pipeline_type)
    form.locator("textarea[name=reason]").fill(reason)
    form.locator("#review-change").click()
    confirm = page.locator("form#confirm-form")
    expect(confirm).to_be_visible()
    return confirm


def css_class(name):
    """Match a class attribute that contains the word ``name``."""
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def expect_flash(page, text):
    expect(page.locator("#flash, #result").filter(has_text=text).first).to_be_visible()


# -- tests -------------------------------------------------------------------------------------


@browser_test
def test_cli_change_appears_live_and_keeps_a_half_typed_reason(sessions, server):
    page = sessions.open("alice")
    page.goto("/")
    before = current(server)
    target = other_type(before.pipeline_type)
    expect(page.locator("#current")).to_have_attribute("data-change-id", str(before.version))
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    reason = page.locator("#change-form textarea[name=reason]")
    reason.click()
    reason.press_sequentially("half-typed: the uploader")
    page.evaluate("window.scrollTo(0, 120)")
    scrolled = page.evaluate("window.scrollY")
    wait_for_polls(page, rounds=2)  # polls that find nothing new leave the page alone
    expect(reason).to_have_value("half-typed: the uploader")
    expect(reason).to_be_focused()
    assert scrolled > 0 and page.evaluate("window.scrollY") == scrolled

    run_cli(server, "set", target, "--by", "cli-op", "--reason", "nightly re-run")
    deadline = time.monotonic() + WITHIN_ONE_POLL_MS / 1000
    after = current(server)
    assert after.pipeline_type == target and after.updated_by == "cli-op"

    current_box = page.locator("#current")
    expect(current_box).to_have_attribute("data-pipeline-type", target, timeout=WITHIN_ONE_POLL_MS)
    expect(current_box).to_have_attribute("data-change-id", str(after.id), timeout=1)
    expect(current_box).to_contain_text("cli-op", timeout=1)
    active = page.locator(f"#buckets tr[data-type={target}]")
    expect(active).to_have_class(css_class("active"), timeout=remaining_ms(deadline))
    expect(active).to_have_attribute("aria-current", "true", timeout=1)
    expect(page.locator("#buckets tr.active")).to_have_count(1, timeout=remaining_ms(deadline))
    entry = page.locator(f'#recent [data-change-id="{after.id}"]')
    expect(entry).to_contain_text(target, timeout=remaining_ms(deadline))
    expect(page.locator("#announcer")).to_contain_text(target, timeout=remaining_ms(deadline))
    expect(page.locator("#change-form input[name=expect_id]")).to_have_value(
        str(after.id), timeout=remaining_ms(deadline)
    )

    expect(reason).to_have_value("half-typed: the uploader")
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    sessions.problems.assert_clean()


@browser_test
def test_form_change_end_to_end(sessions, server):
    page = sessions.open("bob")
    page.goto("/")
    before = current(server)
    target = other_type(before.pipeline_type)
    form = page.locator("form#change-form")
    expect(form.locator("input[name=expect_id]")).to_have_value(str(before.version))

    # A reason is required: the error is shown beside the field and nothing is written.
    form.locator("select[name=pipeline_type]").select_option(target)
    form.locator("textarea[name=reason]").fill("")
    with sessions.problems.tolerating(http_status(400, 422)):
        form.locator("#review-change").click()
        expect(page.locator(".field-error").first).to_be_visible()
    assert current(server) == before

    confirm = review(page, target, REASON)
    expect(confirm).to_contain_text(target)
    assert current(server) == before, "the review step wrote a change"
    save_screenshot(page, "confirm")

    page.locator("#apply-change").click()
    expect(page.locator("#current")).to_have_attribute("data-pipeline-type", target)
    expect_flash(page, target)

    # What another process sees: the CLI's JSON record.
    record = json.loads(run_cli(server, "get", "--json"))
    assert record["pipeline_type"] == target
    assert record["updated_by"] == "bob"
    assert record["metadata"]["source"] == "web"
    assert record["metadata"]["reason"] == REASON
    assert record["metadata"]["previous_id"] == before.id
    expect(page.locator("#current")).to_have_attribute("data-change-id", str(record["id"]))
    expect(page.locator("#current")).to_contain_text(REASON)  # "<north>" shown, not parsed
    save_screenshot(page, "dashboard")
    sessions.problems.assert_clean()


@browser_test
def test_revert_from_history_end_to_end(sessions, server):
    start = current(server)
    first_type = other_type(start.pipeline_type)
    second_type = other_type(start.pipeline_type, first_type)
    with PipelineStore(server.db_path) as store:
        older = store.set(first_type, updated_by="carol", reason="seed", source="cli").change
        newer = store.set(second_type, updated_by="carol", reason="oops", source="cli").change
        rows_before = [change.to_dict() for change in store.history(limit=1000)]

    page = sessions.open("alice")
    page.goto("/history")
    expect(page.locator(f'[data-change-id="{newer.id}"] .revert-button')).to_have_count(0)
    entry = page.locator(f'[data-change-id="{older.id}"]').filter(
        has=page.locator("form.revert-form")
    )
    expect(entry).to_have_count(1)
    save_screenshot(page, "history")

    entry.locator(".revert-button").click()
    expect(page.locator("#apply-change")).to_be_visible()
    assert current(server) == newer, "the revert button wrote without confirmation"
    page.locator("#apply-change").click()
    expect_flash(page, first_type)

    reverted = current(server)
    assert reverted.id > newer.id
    assert reverted.pipeline_type == first_type
    assert reverted.metadata["reverts_to"] == older.id
    assert reverted.updated_by == "alice"
    assert reverted.source == "web"
    with PipelineStore(server.db_path) as store:
        rows_after = [change.to_dict() for change in store.history(limit=1000)]
    assert rows_after[1:] == rows_before, "history was rewritten"

    page.goto("/")
    expect(page.locator("#current")).to_have_attribute("data-change-id", str(reverted.id))
    expect(page.locator("#current")).to_have_attribute("data-pipeline-type", first_type)
    sessions.problems.assert_clean()


@browser_test
def test_second_browser_confirming_a_stale_change_gets_the_conflict(sessions, server):
    first = sessions.open("alice")
    second = sessions.open("bob")
    first.goto("/")
    second.goto("/")
    before = current(server)
    alice_type = other_type(before.pipeline_type)
    bob_type = other_type(before.pipeline_type, alice_type)

    # Bob reviews his change; while he reads the confirmation, Alice applies hers.
    bob_confirm = review(second, bob_type, "bob: stale form")
    expect(bob_confirm.locator("input[name=expect_id]")).to_have_value(str(before.version))
    review(first, alice_type, "alice: first")
    first.locator("#apply-change").click()
    expect(first.locator("#current")).to_have_attribute("data-pipeline-type", alice_type)
    after_alice = current(server)
    assert after_alice.pipeline_type == alice_type and after_alice.updated_by == "alice"

    # Bob's page keeps polling meanwhile; what he confirmed is still the change from `before`.
    wait_for_polls(second, rounds=2)
    conflict = second.locator("#conflict")
    with sessions.problems.tolerating(http_status(409)):
        second.locator("#apply-change").click()
        expect(conflict).to_be_visible()
    expect(conflict).to_contain_text(alice_type)
    expect(conflict).to_contain_text("alice")
    assert current(server) == after_alice, "the stale change was written"
    save_screenshot(second, "conflict")

    second.locator("#apply-on-top").click()
    expect(second.locator("#current")).to_have_attribute("data-pipeline-type", bob_type)
    on_top = current(server)
    assert on_top.pipeline_type == bob_type and on_top.updated_by == "bob"
    assert on_top.metadata["previous_id"] == after_alice.id
    sessions.problems.assert_clean()


@browser_test
def test_stale_form_without_javascript_gets_the_conflict(sessions, server):
    page = sessions.open("bob", javascript=False)  # plain form posts: nothing refreshes the form
    page.goto("/")
    before = current(server)
    cli_type = other_type(before.pipeline_type)
    bob_type = other_type(before.pipeline_type, cli_type)
    expect(page.locator("#change-form input[name=expect_id]")).to_have_value(str(before.version))

    run_cli(server, "set", cli_type, "--by", "cli-op", "--reason", "meanwhile")
    after_cli = current(server)
    review(page, bob_type, "bob: stale, no js")
    conflict = page.locator("#conflict")
    with sessions.problems.tolerating(http_status(409)):
        page.locator("#apply-change").click()
        expect(conflict).to_be_visible()
    expect(conflict).to_contain_text(cli_type)
    expect(conflict).to_contain_text("cli-op")
    assert current(server) == after_cli, "the stale change was written"
    sessions.problems.assert_clean()


@browser_test
def test_live_indicator_warns_offline_and_recovers(chromium, tmp_path):
    with make_server(tmp_path) as live:
        opened = Sessions(chromium, live)
        try:
            page = opened.open()
            page.goto("/")
            status = page.locator("#live-status")
            expect(status).to_have_attribute("data-state", "live")
            live_text = status.inner_text().strip()

            with opened.problems.tolerating(SERVER_DOWN):
                live.stop()
                expect(status).to_have_attribute("data-state", "offline", timeout=STEP_MS)
                expect(status).to_be_visible()
                expect(status).not_to_have_text(live_text)
                # A change made while the dashboard is down shows up once it is back.
                run_cli(live, "set", "filtered", "--by", "cli-op", "--reason", "during outage")
                live.start()  # same port: the page's polls reach it again
                expect(status).to_have_attribute("data-state", "live", timeout=STEP_MS)
            expect(page.locator("#current")).to_have_attribute(
                "data-pipeline-type", "filtered", timeout=WITHIN_ONE_POLL_MS
            )
            assert opened.problems.tolerated, "the outage went unnoticed by the browser"
            opened.problems.assert_clean()
        finally:
            opened.close()


@browser_test
def test_watcher_catches_csp_violations_and_console_errors(chromium, server):
    """The harness itself: a page that breaks the policy must be reported."""
    opened = Sessions(chromium, server)
    try:
        page = opened.open()
        hostile = (
            "<p>x</p><script>console.error('boom')</script><img src='https://elsewhere.test/i.png'>"
        )
        page.route(
            "**/harness-check",
            lambda route: route.fulfill(
                body=hostile,
                content_type="text/html",
                headers={"Content-Security-Policy": "default-src 'self'"},
            ),
        )
        page.goto("/harness-check")
        page.evaluate("console.error('an error logged by the page')")
        expect(page.locator("p")).to_have_text("x")
        page.wait_for_function("true")
        with pytest.raises(AssertionError, match="CSP violation: script-src"):
            opened.problems.assert_clean()
        assert any("img-src blocked https://elsewhere.test" in p for p in opened.problems.problems)
        assert any("an error logged by the page" in p for p in opened.problems.problems)
        assert not any("boom" in p for p in opened.problems.problems), "inline script ran"
    finally:
        opened.close()


CI_HOOK_CHECK = """
import pytest

@pytest.mark.browser
def test_needs_a_browser():
    pytest.skip("no chromium here")

def test_plain_skip():
    pytest.skip("not a browser test")
"""


@pytest.mark.slow
@pytest.mark.parametrize(("ci", "outcomes"), [("true", {"failed": 1}), ("", {"skipped": 1})])
def test_ci_turns_a_skipped_browser_test_into_a_failure(pytester, monkeypatch, ci, outcomes):
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    browser: needs chromium\n")
    pytester.makepyfile(CI_HOOK_CHECK)
    result = pytester.runpytest_subprocess("-rA")
    result.assert_outcomes(skipped=1 + outcomes.get("skipped", 0), failed=outcomes.get("failed", 0))
    if ci:
        result.stdout.fnmatch_lines(["*skipped under CI=true*no chromium here*"])
