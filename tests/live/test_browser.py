"""Real-browser tests (issue 3): Debian's Chromium, driven by Playwright, against gunicorn.

One gunicorn (two workers, ``PIPELINE_POLL_SECONDS=1``) and one Chromium serve the module; each
test opens fresh browser contexts (one per operator) and checks, at its end, that no page logged a
console error, threw, was refused a server answer (5xx) or violated the Content-Security-Policy.

Element ids and attributes follow the dashboard's DOM contract (``#current``, ``#buckets``,
``#recent``, ``#change-form``, ``#confirm-form``, ``#conflict``, ``#live-status``, ...).

``SAVE_SCREENSHOTS=1`` also writes the README's screenshots to ``docs/screenshots/``.
"""

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_support import (
    SERVER_DOWN,
    STEP_MS,
    BrowserProblems,
    BrowserServer,
    answered,
    browser_test,
    expect_no_sideways_scroll,
    http_status,
    save_screenshot,
    write_users_file,
)
from conftest import make_sensor_db
from live import ROOT
from playwright.sync_api import expect

from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.store import PipelineStore
from webapp.core.text import MAX_REASON

POLL_SECONDS = 1.0
# "Appears within one poll interval": one interval, plus a margin for the request, the swap and a
# busy CI machine. Measured from the moment the other process's write has returned.
WITHIN_ONE_POLL_MS = int((POLL_SECONDS + 2.5) * 1000)
LONG_NAME = "operator." + "x" * 110  # no space to wrap at: the layout must still hold
OPERATORS = {"alice": "alice-secret-1", "bob": "bob-secret-2", LONG_NAME: "long-secret-3"}
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WRITE_TIMEOUT = 1.0  # seconds a write waits for a held lock: the busy test holds one
REASON = "Requested by the <north> site team (ticket OPS-42)"  # markup must stay text


# -- fixtures (chromium: tests/conftest.py) -------------------------------------------------


def make_server(directory: Path) -> BrowserServer:
    """A gunicorn (not started) on a fresh sensor database, with two operator accounts."""
    db = make_sensor_db(directory / "sensor_data.db")
    users = directory / "users.htpasswd"
    write_users_file(users, OPERATORS)
    env = {
        "PIPELINE_USERS_FILE": str(users),
        "PIPELINE_POLL_SECONDS": str(POLL_SECONDS),
        "PIPELINE_WRITE_TIMEOUT": str(WRITE_TIMEOUT),
    }
    return BrowserServer(db, workers=2, env=env)


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

    def open(self, operator=None, *, javascript=True, viewport=VIEWPORT):
        context = self.browser.new_context(
            base_url=self.server.url, viewport=viewport, java_script_enabled=javascript
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


def review(page, pipeline_type, reason):
    """Fill the change form and press "Review change"; return the confirmation form."""
    form = page.locator("form#change-form")
    form.locator("select[name=pipeline_type]").select_option(pipeline_type)
    form.locator("input[name=reason]").fill(reason)
    form.locator("#review-change").click()
    confirm = page.locator("form#confirm-form")
    expect(confirm).to_be_visible()
    return confirm


def css_class(name):
    """Match a class attribute that contains the word ``name``."""
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def expect_flash(page, text):
    expect(page.locator("#flash, #result").filter(has_text=text).first).to_be_visible()


def path_of(page):
    return urlsplit(page.url).path


@contextmanager
def write_lock_held(server):
    """Hold the write lock from a second connection (BEGIN IMMEDIATE), as a busy writer does."""
    conn = sqlite3.connect(server.db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


# -- tests -------------------------------------------------------------------------------------


@browser_test
def test_cli_change_appears_live_and_keeps_a_half_typed_reason(sessions, server):
    page = sessions.open("alice")
    page.goto("/")
    before = current(server)
    target = other_type(before.pipeline_type)
    chosen = other_type(before.pipeline_type, target)
    expect(page.locator("#current")).to_have_attribute("data-change-id", str(before.version))
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    select = page.locator("#change-form select[name=pipeline_type]")
    select.select_option(chosen)
    reason = page.locator("#change-form input[name=reason]")
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
    expect(entry.locator(".current-badge")).to_have_text("current", timeout=1)
    expect(page.locator("#announcer")).to_contain_text(target, timeout=remaining_ms(deadline))
    expect(page.locator("#change-form input[name=expect_id]")).to_have_value(
        str(after.id), timeout=remaining_ms(deadline)
    )
    # The "(current)" mark moved with it; the operator's choice and reason stayed.
    expect(select.locator(f"option[value={target}]")).to_have_text(re.compile(r"\(current\)$"))
    expect(select.locator("option", has_text="(current)")).to_have_count(1)
    expect(select).to_have_value(chosen)
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

    # Nothing is preselected, and the reason says it is required before anything is sent.
    select = form.locator("select[name=pipeline_type]")
    expect(select).to_have_value("")
    expect(select).to_have_attribute("required", "")
    reason = form.locator("input[name=reason]")
    expect(reason).to_have_attribute("required", "")
    expect(reason).to_have_attribute("maxlength", str(MAX_REASON))
    expect(form.locator("label[for=reason]")).to_contain_text("(required)")

    # Only a reason typed: no switch to raw is proposed; the choice is asked for.
    reason.fill("I only typed a reason")
    with sessions.problems.tolerating(http_status(422)):
        form.locator("#review-change").click()
        expect(page.locator("#pipeline_type-error")).to_have_text("Choose the new pipeline.")
    expect(page.locator("#change-form select[name=pipeline_type]")).to_be_focused()
    expect(page.locator("#change-form input[name=reason]")).to_have_value("I only typed a reason")
    assert current(server) == before

    # A type chosen without a reason: the error is shown beside the field, nothing is written.
    form.locator("select[name=pipeline_type]").select_option(target)
    form.locator("input[name=reason]").fill("")
    with sessions.problems.tolerating(http_status(422)):
        form.locator("#review-change").click()
        expect(page.locator("#reason-error")).to_be_visible()
    expect(form.locator("input[name=reason]")).to_have_attribute("aria-invalid", "true")
    assert current(server) == before

    confirm = review(page, target, REASON)
    expect(confirm).to_contain_text(target)
    expect(page.locator("#confirm-heading")).to_be_focused()
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

    # The type now in force is marked, and choosing it again is refused with a field message.
    select = page.locator("#change-form select[name=pipeline_type]")
    expect(select).to_have_value("")
    expect(select.locator(f"option[value={target}]")).to_have_text(re.compile(r"\(current\)$"))
    select.select_option(target)
    page.locator("#change-form input[name=reason]").fill("once more")
    with sessions.problems.tolerating(http_status(422)):
        page.locator("#review-change").click()
        expect(page.locator("#pipeline_type-error")).to_contain_text("already the current")
    assert current(server).id == record["id"]
    page.goto("/")
    save_screenshot(page, "dashboard")
    sessions.problems.assert_clean()


def seed_two_changes(server, who="carol"):
    """Write two changes of types other than the current one; return (older, newer)."""
    start = current(server)
    first_type = other_type(start.pipeline_type)
    second_type = other_type(start.pipeline_type, first_type)
    with PipelineStore(server.db_path) as store:
        older = store.set(first_type, updated_by=who, reason="seed", source="cli").change
        newer = store.set(second_type, updated_by=who, reason="oops", source="cli").change
    return older, newer


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
@browser_test
def test_revert_from_history_returns_to_history(sessions, server, javascript):
    older, newer = seed_two_changes(server)
    with PipelineStore(server.db_path) as store:
        rows_before = [change.to_dict() for change in store.history(limit=1000)]

    page = sessions.open("alice", javascript=javascript)
    listing = f"/history?operator=carol&pipeline_type={older.pipeline_type}"
    page.goto("/history?operator=carol")
    # Nothing to revert to where it would change nothing: the current entry, or its type.
    expect(page.locator(f'[data-change-id="{newer.id}"] .current-badge')).to_have_text("current")
    expect(page.locator(f'[data-change-id="{newer.id}"] .revert-button')).to_have_count(0)
    button = page.get_by_role(
        "button", name=f"Revert to {older.pipeline_type} (change #{older.id})"
    )
    expect(button).to_have_count(1)
    if javascript:
        save_screenshot(page, "history")

    page.goto(listing)
    button.click()
    expect(page.locator("#apply-change")).to_be_visible()
    expect(page.locator("h1")).to_have_text("History")
    review_url = urlsplit(page.url)
    assert review_url.path == f"/revert/{older.id}"
    (back,) = parse_qs(review_url.query)["next"]
    assert urlsplit(back).path == "/history"
    assert parse_qs(urlsplit(back).query) == parse_qs(urlsplit(listing).query)
    page.reload()  # a confirmation reached by GET: reloading asks nothing, writes nothing
    expect(page.locator("#apply-change")).to_be_visible()
    assert current(server) == newer, "the revert button wrote without confirmation"

    page.locator("#revert-panel input[name=reason]").fill("carol's second change broke uploads")
    page.locator("#apply-change").click()
    page.wait_for_url(re.compile(r"/history\?"))
    assert urlsplit(page.url).path == "/history"
    assert parse_qs(urlsplit(page.url).query) == parse_qs(urlsplit(listing).query)
    expect_flash(page, f"Pipeline reverted to {older.pipeline_type}")
    reverted = current(server)
    assert reverted.id > newer.id
    assert reverted.pipeline_type == older.pipeline_type
    assert reverted.metadata["reverts_to"] == older.id
    assert reverted.updated_by == "alice" and reverted.source == "web"
    assert reverted.reason == "carol's second change broke uploads"
    with PipelineStore(server.db_path) as store:
        rows_after = [change.to_dict() for change in store.history(limit=1000)]
    assert rows_after[1:] == rows_before, "history was rewritten"

    page.reload()  # post/redirect/get: reloading shows history again, and writes nothing
    expect(page.locator("h1")).to_have_text("History")
    expect(page.locator("#confirm-form")).to_have_count(0)
    assert current(server) == reverted
    sessions.problems.assert_clean()


@browser_test
def test_revert_from_the_dashboard_stays_on_the_dashboard(sessions, server):
    older, newer = seed_two_changes(server, who="dave")
    page = sessions.open("alice")
    page.goto("/")
    page.evaluate("window.__sameDocument = true")
    page.locator(f'#recent [data-change-id="{older.id}"] .revert-button').click()
    expect(page.locator("#confirm-heading")).to_be_focused()  # wherever the button was
    page.locator("#confirm-form input[name=reason]").fill("the older one worked")
    page.locator("#apply-change").click()
    expect(page.locator("#current")).to_have_attribute("data-pipeline-type", older.pipeline_type)
    expect_flash(page, f"Pipeline reverted to {older.pipeline_type} (change #{older.id})")
    assert path_of(page) == "/" and page.evaluate("window.__sameDocument === true")
    assert current(server).metadata["reverts_to"] == older.id
    sessions.problems.assert_clean()


@browser_test
def test_busy_apply_keeps_what_was_typed_and_tries_again(sessions, server):
    before = current(server)
    target = other_type(before.pipeline_type)
    page = sessions.open("bob")
    page.goto("/")
    review(page, target, "night batch, ticket OPS-9")
    with write_lock_held(server), sessions.problems.tolerating(answered(503)):
        page.locator("#apply-change").click()
        expect(page.locator("#panel-message")).to_contain_text("retrying is safe")
    expect(page.locator("#confirm-form")).to_contain_text("night batch, ticket OPS-9")
    expect(page.locator("#confirm-type")).to_have_text(target)
    assert current(server) == before, "a change was written while the lock was held"
    page.get_by_role("button", name="Try again").click()
    expect(page.locator("#current")).to_have_attribute("data-pipeline-type", target)
    assert current(server).reason == "night batch, ticket OPS-9"

    # The same for a revert, started from /history without JavaScript (plain pages).
    older, newer = seed_two_changes(server, who="erin")
    plain = sessions.open("alice", javascript=False)
    plain.goto("/history?operator=erin")
    plain.locator(f'[data-change-id="{older.id}"] .revert-button').click()
    plain.locator("#revert-panel input[name=reason]").fill("revert while the writer is busy")
    with write_lock_held(server), sessions.problems.tolerating(answered(503)):
        plain.locator("#apply-change").click()
        expect(plain.locator("#panel-message")).to_contain_text("retrying is safe")
    expect(plain.locator("#revert-panel input[name=reason]")).to_have_value(
        "revert while the writer is busy"
    )
    assert current(server) == newer
    plain.get_by_role("button", name="Try again").click()
    plain.wait_for_url(re.compile(r"/history\?operator=erin$"))
    expect_flash(plain, f"Pipeline reverted to {older.pipeline_type}")
    assert current(server).reason == "revert while the writer is busy"
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

    # Bob's page keeps polling meanwhile; what he confirmed is still the change from `before`,
    # and the open confirmation says so before he presses Apply.
    expect(second.locator("#confirm-stale")).to_be_hidden()
    wait_for_polls(second, rounds=2)
    expect(second.locator("#confirm-stale")).to_be_visible()
    # htmx's indicator styles would be an inline <style> (a CSP violation): none is inserted.
    assert second.evaluate("document.querySelectorAll('style').length") == 0
    conflict = second.locator("#conflict")
    with sessions.problems.tolerating(http_status(409)):
        second.locator("#apply-change").click()
        expect(conflict).to_be_visible()
    expect(conflict).to_contain_text(alice_type)
    expect(conflict).to_contain_text("alice")
    expect(conflict).to_contain_text("bob: stale form")
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
    # The review is checked against what the server reads now, and says that it moved.
    review(page, bob_type, "bob: stale, no js")
    expect(page.locator("#confirm-moved")).to_contain_text(cli_type)
    expect(page.locator("#confirm-form input[name=expect_id]")).to_have_value(
        str(current(server).version)
    )
    # Changed again while Bob reads the confirmation: Apply shows the conflict.
    later_type = other_type(cli_type, bob_type)
    run_cli(server, "set", later_type, "--by", "cli-op", "--reason", "meanwhile")
    after_cli = current(server)
    cli_type = later_type
    conflict = page.locator("#conflict")
    with sessions.problems.tolerating(http_status(409)):
        page.locator("#apply-change").click()
        expect(conflict).to_be_visible()
    expect(conflict).to_contain_text(cli_type)
    expect(conflict).to_contain_text("cli-op")
    assert current(server) == after_cli, "the stale change was written"
    sessions.problems.assert_clean()


# -- phone width -------------------------------------------------------------------------------

# Another tool's table (no CHECK) and its rows: long words everywhere, an unknown type, times
# that are not times or lie in the future.
NO_CHECK_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT,"
    " updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, metadata TEXT)"
)
LONG_WORD = "w" * 300
OTHER_TOOL_ROWS = [  # the last one, current, names a type this tool does not manage
    ("filtered", "2026-11-20 08:00:00", "y" * 150, json.dumps({"reason": LONG_WORD})),
    ("aggregated", "2099-01-01 00:00:00", "future-writer", '{"reason": NaN}'),
    ("emergency_" + "z" * 120, "yesterday", None, "not json"),
]


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory):
    """A server whose table another tool made, holding rows no layout likes."""
    live = make_server(tmp_path_factory.mktemp("phone"))
    conn = sqlite3.connect(live.db_path)
    conn.execute(NO_CHECK_TABLE)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata)"
        " VALUES (?, ?, ?, ?)",
        OTHER_TOOL_ROWS,
    )
    conn.commit()
    conn.close()
    with live:
        yield live


def expect_legible_ticks(page, what):
    """Every visible tick label is 12px text inside its drawing, none over another."""
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('.tick-label')).filter(
             (label) => getComputedStyle(label).display !== 'none').map((label) => {
               const box = label.getBoundingClientRect();
               const svg = label.ownerSVGElement.getBoundingClientRect();
               return {left: box.left, right: box.right, top: box.top,
                       svgLeft: svg.left, svgRight: svg.right,
                       size: parseFloat(getComputedStyle(label).fontSize)};
             })"""
    )
    assert boxes, what
    for box in boxes:
        assert box["size"] >= 12, (what, box)
        assert box["svgLeft"] <= box["left"] and box["right"] <= box["svgRight"], (what, box)
    rows = {}
    for box in boxes:
        rows.setdefault(round(box["top"]), []).append(box)
    for row in rows.values():
        row.sort(key=lambda box: box["left"])
        for left, right in zip(row, row[1:], strict=False):
            assert left["right"] <= right["left"], (what, left, right)


@browser_test
def test_phone_width_nothing_scrolls_sideways(chromium, phone_server):
    opened = Sessions(chromium, phone_server)
    try:
        visitor = opened.open(viewport=PHONE)
        for path in ("/login", "/", "/history", "/timeline"):
            visitor.goto(path)
            expect(visitor.locator("#login-link")).to_be_visible()
            expect_no_sideways_scroll(visitor, f"{path}, signed out")
        expect_legible_ticks(visitor, "/timeline")

        page = opened.open(LONG_NAME, viewport=PHONE)
        page.goto("/")
        expect(page.locator("#operator-name")).to_have_text(LONG_NAME)
        expect(page.locator("#logout")).to_be_visible()
        expect(page.locator("#current .type")).to_contain_text("not a type this tool manages")
        expect_no_sideways_scroll(page, "/ with another tool's rows")
        expect_legible_ticks(page, "/")
        save_screenshot(page, "phone")

        before = current(phone_server)
        confirm = review(page, "schematized", "because-" + LONG_WORD)
        expect(confirm).to_contain_text("because-")
        expect_no_sideways_scroll(page, "confirm step")

        with PipelineStore(phone_server.db_path) as store:  # meanwhile, someone else
            store.set(
                "raw", updated_by="x" * 120, reason=LONG_WORD, source="cli", expect_id=before.id
            )
        with opened.problems.tolerating(http_status(409)):
            page.locator("#apply-change").click()
            expect(page.locator("#conflict")).to_be_visible()
        expect_no_sideways_scroll(page, "conflict step")

        page.goto("/history")
        expect_no_sideways_scroll(page, "/history")
        page.locator("[data-change-id='1'] .revert-button").click()
        expect(page.locator("#revert-panel #confirm-form")).to_be_visible()
        expect_no_sideways_scroll(page, "revert confirmation on /history")
        page.goto("/timeline")
        expect_no_sideways_scroll(page, "/timeline")
        expect_legible_ticks(page, "/timeline")
        opened.problems.assert_clean()
    finally:
        opened.close()


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
    # The conftest loads plugins that live beside it (fleetfixtures): the sub-run must find them.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    browser: needs chromium\n")
    pytester.makepyfile(CI_HOOK_CHECK)
    result = pytester.runpytest_subprocess("-rA")
    result.assert_outcomes(skipped=1 + outcomes.get("skipped", 0), failed=outcomes.get("failed", 0))
    if ci:
        result.stdout.fnmatch_lines(["*skipped under CI=true*no chromium here*"])
