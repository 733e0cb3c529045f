"""Dashboard views with the test client, read as HTML (tests/htmldom.py): pages, fragments,
polling, the change and revert flows, the audit record, and rows other tools wrote."""

import json
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from htmldom import headings, parse
from weblib import csrf_from, log_in, make_app

from webapp.core.store import PipelineStore
from webapp.core.text import MAX_REASON
from webapp.core.timefmt import iso

HX = {"HX-Request": "true"}
UNMANAGED = "not a type this tool manages"


def set_by(db_path, pipeline_type, who="bob", reason="because"):
    """Write a change through another store (its own connection), as the CLI would."""
    with PipelineStore(db_path, write_timeout=5) as other:
        return other.set(pipeline_type, updated_by=who, reason=reason, source="cli").change


def current_of(db_path):
    with PipelineStore(db_path) as store:
        return store.current()


def row_count(db_path):
    with PipelineStore(db_path) as store:
        return store.count()


def html(response):
    return response.get_data(as_text=True)


def page(response, status=200):
    """Parse a response as HTML after checking its status."""
    assert response.status_code == status, (response.status_code, html(response)[:3000])
    return parse(html(response))


def entries(document):
    """The change entries of a page (recent list or history), by change id."""
    return {int(li.get("data-change-id")): li for li in document.find_all("li", cls="change")}


def form_fields(form):
    """Return the name → value of a form's inputs (what a browser would post)."""
    return {i.get("name"): i.get("value", "") for i in form.find_all("input") if i.get("name")}


def confirm_post(document):
    """Return (action, fields) of the confirmation form on a page."""
    form = document.by_id("confirm-form")
    return form.get("action"), form_fields(form)


def same_post(first, second):
    """True when two (action, fields) post the same thing (CSRF tokens are signed per render)."""

    def strip(post):
        return post[0], {k: v for k, v in post[1].items() if k != "csrf_token"}

    return strip(first) == strip(second)


@contextmanager
def write_lock_held(db_path):
    """Hold the database's write lock from another connection, as a busy sensor writer does."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


# -- the dashboard page and its fragments ------------------------------------------------------


def test_dashboard_page_shows_current_buckets_form_recent(operator, db_path):
    change = set_by(db_path, "filtered", who="bob", reason="enable filtering")
    document = page(operator.get("/"))
    current = document.by_id("current")
    assert current.get("data-pipeline-type") == "filtered"
    assert current.get("data-change-id") == str(change.id)
    assert "enable filtering" in current.text() and "bob" in current.text()
    assert current.one("code", cls="bucket").text() == "enriched"
    rows = document.by_id("buckets").find_all("tr", data_type=True)
    assert [row.get("data-type") for row in rows] == [
        "raw",
        "schematized",
        "filtered",
        "aggregated",
    ]
    assert [row.get("data-type") for row in rows if "active" in row.classes] == ["filtered"]
    assert document.by_id("buckets").one("tr", cls="active").get("aria-current") == "true"
    form = document.by_id("change-form")
    assert form.one("input", name="expect_id").get("value") == str(change.id)
    assert set(entries(document.by_id("recent"))) == {change.id}
    assert document.by_id("timeline").find_all("svg")
    # The page itself carries no out-of-band markers: only polls and writes do.
    assert not document.find_all(hx_swap_oob=True)


def test_fragment_for_htmx_full_page_otherwise(operator):
    fragment = html(operator.get("/change?pipeline_type=aggregated&reason=x", headers=HX))
    assert "<html" not in fragment
    select = parse(fragment).by_id("change-form").one("select", name="pipeline_type")
    assert select.one("option", selected=True).get("value") == "aggregated"
    boosted = html(operator.get("/change", headers={**HX, "HX-Boosted": "true"}))
    assert boosted.startswith("<!doctype html>")
    assert html(operator.get("/change")).startswith("<!doctype html>")
    history = html(operator.get("/history", headers=HX))
    assert history.lstrip().startswith('<section id="history-results"')
    restore = operator.get("/history", headers={**HX, "HX-History-Restore-Request": "true"})
    assert html(restore).startswith("<!doctype html>")


# -- polling -----------------------------------------------------------------------------------


def test_unchanged_poll_is_an_empty_204(operator, db_path):
    change = set_by(db_path, "schematized")
    response = operator.get(f"/poll?since={change.id}", headers=HX)
    assert response.status_code == 204
    assert response.data == b""
    header_bytes = sum(len(k) + len(v) + 4 for k, v in response.headers.items())
    assert header_bytes < 700, response.headers


def test_poll_sees_a_change_committed_elsewhere_after_an_idle_answer(operator, db_path):
    first = set_by(db_path, "schematized")
    for _ in range(3):  # the poll's warm connection must not keep an old snapshot
        assert operator.get(f"/poll?since={first.id}", headers=HX).status_code == 204
    second = set_by(db_path, "filtered")
    response = operator.get(f"/poll?since={first.id}", headers=HX)
    assert page(response).by_id("current").get("data-change-id") == str(second.id)
    assert operator.get(f"/poll?since={second.id}", headers=HX).status_code == 204


# Another process (an operator's shell) that sets the pipeline and closes its connection.
SET_ELSEWHERE = """
import sys
from webapp.core.store import PipelineStore
with PipelineStore(sys.argv[1]) as store:
    print(store.set("aggregated", updated_by="shell", source="cli").change.id)
"""


def test_warm_poll_connection_keeps_its_locks_while_pages_open_stores(operator, db_path):
    first = set_by(db_path, "schematized")
    assert operator.get(f"/poll?since={first.id}").status_code == 204  # warm connection open
    assert operator.get("/").status_code == 200  # a per-request store opens and closes
    # If that open had dropped this process's locks (closing any descriptor of the file does),
    # the other process would think itself the last user and delete the WAL under the poll.
    result = subprocess.run(
        [sys.executable, "-c", SET_ELSEWHERE, str(db_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert Path(f"{db_path}-wal").exists() and Path(f"{db_path}-shm").exists()
    response = operator.get(f"/poll?since={first.id}")
    assert page(response).by_id("current").get("data-change-id") == result.stdout.strip()


def test_poll_on_a_never_set_database_is_204_at_zero(operator):
    assert operator.get("/poll?since=0").status_code == 204


def test_changed_poll_returns_every_fragment_out_of_band(operator, db_path):
    first = set_by(db_path, "schematized")
    second = set_by(db_path, "aggregated", who="carol", reason="nightly rollup")
    response = operator.get(f"/poll?since={first.id}", headers=HX)
    document = page(response)
    for fragment in ("current", "buckets", "recent", "timeline"):
        assert document.by_id(fragment).get("hx-swap-oob") == "true", fragment
    assert document.by_id("current").get("data-change-id") == str(second.id)
    assert document.by_id("buckets").one("tr", cls="active").get("data-type") == "aggregated"
    announcer = document.by_id("announcer")
    assert announcer.get("hx-swap-oob") == "innerHTML"
    assert announcer.text() == "Pipeline changed to aggregated by carol"
    assert document.by_id("since").get("value") == str(second.id)
    trigger = json.loads(response.headers["HX-Trigger"])
    changed = {"id": second.id, "type": "aggregated", "mark": " (current)"}
    assert trigger == {"pipeline-changed": changed}
    assert document.find(id="change-form") is None  # the reason being typed is never replaced


# -- the change form ---------------------------------------------------------------------------


def test_change_form_preselects_nothing_and_marks_the_current_type(operator, db_path):
    set_by(db_path, "filtered")
    form = page(operator.get("/")).by_id("change-form")
    select = form.one("select", name="pipeline_type")
    assert "required" in select.attrs
    options = select.find_all("option")
    assert options[0].get("value") == "" and options[0].text() == "Choose a pipeline…"
    assert [option.get("value") for option in options if "selected" in option.attrs] in ([], [""])
    labels = {option.get("value"): option.text() for option in options}
    assert labels["filtered"].endswith("(current)")
    assert not any(labels[kind].endswith("(current)") for kind in ("raw", "schematized"))


def test_never_set_database_marks_raw_as_the_default_and_allows_recording_it(operator, db_path):
    select = page(operator.get("/")).by_id("change-form").one("select", name="pipeline_type")
    assert select.one("option", value="raw").text().endswith("(default: never set)")
    form = {"pipeline_type": "raw", "reason": "make the default explicit", "expect_id": "0"}
    assert operator.post("/change", data=form).status_code == 200
    assert operator.post("/change/apply", data=form).status_code == 302
    assert current_of(db_path).pipeline_type == "raw" and row_count(db_path) == 1


def test_reason_is_one_required_line_of_limited_length(operator):
    form = page(operator.get("/")).by_id("change-form")
    reason = form.one("input", name="reason")
    assert reason.get("type") == "text" and "required" in reason.attrs
    assert reason.get("maxlength") == str(MAX_REASON)
    assert form.find("textarea") is None
    label = form.one("label", for_=reason.get("id"))
    assert "(required)" in label.text()


def test_reason_optional_when_configured(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, REQUIRE_REASON=False)
    client = app.test_client()
    log_in(client)
    form = page(client.get("/")).by_id("change-form")
    reason = form.one("input", name="reason")
    assert "required" not in reason.attrs
    assert "(optional)" in form.one("label", for_="reason").text()
    data = {"pipeline_type": "filtered", "reason": "", "expect_id": "0"}
    assert client.post("/change/apply", data=data).status_code == 302
    assert row_count(db_path) == 1


def test_missing_type_or_reason_is_shown_beside_the_field(operator, db_path):
    document = page(operator.post("/change", data={"reason": "", "expect_id": "0"}), 422)
    form = document.by_id("change-form")
    assert form.one("select", name="pipeline_type").get("aria-invalid") == "true"
    assert document.by_id("pipeline_type-error").text() == "Choose the new pipeline."
    assert form.one("input", name="reason").get("aria-invalid") == "true"
    assert "reason" in document.by_id("reason-error").text()
    assert row_count(db_path) == 0


def test_choosing_the_current_type_is_refused_with_a_field_message(operator, db_path):
    change = set_by(db_path, "filtered")
    form = {"pipeline_type": "filtered", "reason": "again", "expect_id": str(change.id)}
    for path in ("/change", "/change/apply"):
        document = page(operator.post(path, data=form), 422)
        message = document.by_id("pipeline_type-error").text()
        assert message == (
            f"filtered is already the current pipeline (change #{change.id}): choose another one."
        )
        assert document.by_id("change-form").one("input", name="reason").get("value") == "again"
    assert row_count(db_path) == 1


@pytest.mark.parametrize(
    ("reason", "named"),
    [
        ("first line\nsecond line", "U+000A (line feed)"),
        ("tab\there", "U+0009"),
        ("reads \u202ebackwards", "U+202E"),
        ("x" * (MAX_REASON + 1), "too long"),
    ],
)
def test_forged_reason_is_refused_by_the_store_rules_naming_the_field(
    operator, db_path, reason, named
):
    form = {"pipeline_type": "filtered", "reason": reason, "expect_id": "0"}
    for path in ("/change", "/change/apply"):
        document = page(operator.post(path, data=form), 422)
        message = document.by_id("reason-error").text()
        assert message.startswith("reason ") and named in message, message
    assert row_count(db_path) == 0


def test_unknown_type_is_a_field_error(operator, db_path):
    response = operator.post("/change", data={"pipeline_type": "x", "reason": "r", "expect_id": 0})
    assert page(response, 422).by_id("pipeline_type-error").text()
    assert row_count(db_path) == 0


# -- review, apply, conflict -------------------------------------------------------------------


def test_review_then_apply_writes_once_as_the_operator(operator, db_path):
    form = {"pipeline_type": "filtered", "reason": "enable filtering", "expect_id": "0"}
    review = page(operator.post("/change", data=form))
    action, fields = confirm_post(review)
    assert action == "/change/apply"
    assert fields["pipeline_type"] == "filtered" and fields["reason"] == "enable filtering"
    assert review.by_id("apply-change").text() == "Apply change"
    assert row_count(db_path) == 0  # reviewing writes nothing
    applied = operator.post(action, data=fields)
    assert applied.status_code == 302 and applied.headers["Location"] == "/"
    flash = page(operator.get("/")).by_id("flash")
    assert flash.text() == "Pipeline set to filtered (change #1)"
    current = current_of(db_path)
    assert (current.pipeline_type, current.updated_by, current.source) == (
        "filtered",
        "alice",
        "web",
    )


def test_updated_by_comes_from_the_login_not_the_form(operator, db_path):
    form = {"pipeline_type": "raw", "reason": "r", "expect_id": "0", "updated_by": "mallory"}
    operator.post("/change/apply", data=form)
    assert current_of(db_path).updated_by == "alice"


def test_htmx_apply_returns_panel_result_and_live_fragments(operator, db_path):
    form = {"pipeline_type": "aggregated", "reason": "rollup", "expect_id": "0"}
    document = page(operator.post("/change/apply", data=form, headers=HX))
    result = document.by_id("result")
    assert result.text() == "Pipeline set to aggregated (change #1)"
    assert result.get("role") == "status" and "data-focus" in result.attrs
    assert document.by_id("current").get("hx-swap-oob") == "true"
    assert document.by_id("change-form").one("input", name="expect_id").get("value") == "1"


def test_anonymous_write_is_refused_and_nothing_written(web_app, db_path):
    set_by(db_path, "raw")
    client = web_app.test_client()
    form = {"pipeline_type": "filtered", "reason": "r", "expect_id": "1"}
    for path in ("/change", "/change/apply", "/revert/1/apply"):
        response = client.post(path, data=form)
        assert "Sign in as an operator" in page(response, 403).by_id("panel-message").text()
    assert page(client.get("/revert/1?expect_id=1"), 403).find(id="confirm-form") is None
    assert row_count(db_path) == 1
    assert page(client.get("/")).find(id="change-form") is None


def test_stale_write_is_refused_explained_and_can_go_on_top(operator, db_path):
    assert page(operator.get("/")).one("input", name="expect_id").get("value") == "0"
    theirs = set_by(db_path, "schematized", who="bob", reason="validate first")
    form = {"pipeline_type": "filtered", "reason": "mine", "expect_id": "0"}
    document = page(operator.post("/change/apply", data=form), 409)
    conflict = document.by_id("conflict")
    assert "nothing was written" in conflict.text()
    assert "schematized" in conflict.text() and "bob" in conflict.text()
    assert "validate first" in conflict.text() and "mine" in conflict.text()
    assert conflict.one("time").get("datetime") == iso(theirs.updated_at)
    assert row_count(db_path) == 1
    on_top = conflict.one("form")
    fields = form_fields(on_top)
    assert fields["expect_id"] == str(theirs.id) and fields["reason"] == "mine"
    assert document.by_id("apply-on-top").text() == f"Apply mine on top of change #{theirs.id}"
    assert operator.post(on_top.get("action"), data=fields).status_code == 302
    current = current_of(db_path)
    assert current.pipeline_type == "filtered" and current.metadata["previous_id"] == theirs.id


def test_conflict_with_what_was_wanted_offers_nothing_to_apply(operator, db_path):
    set_by(db_path, "filtered", who="bob")
    form = {"pipeline_type": "filtered", "reason": "mine", "expect_id": "0"}
    conflict = page(operator.post("/change/apply", data=form), 409).by_id("conflict")
    assert "already in force" in conflict.text()
    assert conflict.find(id="apply-on-top") is None and conflict.find("form") is None


# -- a failed apply keeps what was typed -------------------------------------------------------


@pytest.fixture
def busy_operator(db_path, tmp_path, monkeypatch):
    """alice, on an app whose writes give up on a held lock after 0.3 s."""
    app = make_app(db_path, tmp_path, monkeypatch, WRITE_TIMEOUT=0.3)
    client = app.test_client()
    assert log_in(client).status_code == 302
    return client


@pytest.mark.parametrize("headers", [{}, HX], ids=["plain", "htmx"])
def test_busy_apply_keeps_the_reviewed_change_and_offers_to_try_again(
    busy_operator, db_path, headers
):
    base = set_by(db_path, "raw")
    form = {"pipeline_type": "aggregated", "reason": "night run, ticket OPS-7", "expect_id": "1"}
    action, fields = confirm_post(page(busy_operator.post("/change", data=form, headers=headers)))
    with write_lock_held(db_path):
        document = page(busy_operator.post(action, data=fields, headers=headers), 503)
    assert "retrying is safe" in document.by_id("panel-message").text()
    again_action, again = confirm_post(document)
    assert same_post((again_action, again), (action, fields))  # the same, re-posted
    assert document.by_id("apply-change").text() == "Try again"
    assert "night run, ticket OPS-7" in document.by_id("confirm-form").text()
    assert current_of(db_path) == base
    done = busy_operator.post(again_action, data=again, headers=headers)
    assert done.status_code == (200 if headers else 302)
    assert current_of(db_path).reason == "night run, ticket OPS-7"


def test_busy_revert_keeps_the_typed_reason_and_its_way_back(busy_operator, db_path):
    first = set_by(db_path, "filtered")
    set_by(db_path, "aggregated")
    review = page(busy_operator.get(f"/revert/{first.id}?expect_id=2&next=/history"))
    action, fields = confirm_post(review)
    fields["reason"] = "aggregation broke the dashboards"
    with write_lock_held(db_path):
        document = page(busy_operator.post(action, data=fields), 503)
    assert document.one("h1").text() == "History"
    again_action, again = confirm_post(document)
    assert same_post((again_action, again), (action, fields))
    assert document.by_id("apply-change").text() == "Try again"
    done = busy_operator.post(again_action, data=again)
    assert done.status_code == 302 and done.headers["Location"] == "/history"
    assert current_of(db_path).reason == "aggregation broke the dashboards"


def test_apply_on_an_unreadable_database_still_keeps_what_was_typed(operator, db_path, tmp_path):
    form = {"pipeline_type": "schematized", "reason": "validate before upload", "expect_id": "0"}
    action, fields = confirm_post(page(operator.post("/change", data=form)))
    db_path.rename(tmp_path / "moved-away.db")  # a restore in progress, say
    document = page(operator.post(action, data=fields), 503)
    assert "database not found" in document.by_id("panel-message").text()
    assert same_post(confirm_post(document), (action, fields))
    assert document.by_id("apply-change").text() == "Try again"
    (tmp_path / "moved-away.db").rename(db_path)
    assert operator.post(action, data=fields).status_code == 302
    assert current_of(db_path).pipeline_type == "schematized"


# -- the audit record: recent list and history -------------------------------------------------


def test_every_entry_reads_as_an_audit_record(operator, db_path):
    first = set_by(db_path, "filtered", who="bob", reason="enable filtering")
    second = set_by(db_path, "aggregated", who="carol", reason="nightly rollup")
    for path, container in (("/", "recent"), ("/history", "history-results")):
        listed = entries(page(operator.get(path)).by_id(container))
        assert set(listed) == {first.id, second.id}
        for change, previous in ((first, "(default)"), (second, "filtered")):
            entry = listed[change.id]
            time = entry.one("time")
            assert time.get("datetime") == iso(change.updated_at)
            assert time.text() == change.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            assert entry.one("span", data_ago=iso(change.updated_at)).text() == "just now"
            assert entry.one("span", cls="who").text() == change.updated_by
            assert entry.one("span", cls="from").text() == previous
            assert entry.one("strong", cls="to").text() == change.pipeline_type
            assert entry.one("span", cls="source").text() == "cli"
            assert change.reason in entry.one("p", cls="reason").text()
        assert listed[second.id].one(cls="current-badge").text() == "current"
        assert listed[first.id].find(cls="current-badge") is None


def test_revert_is_offered_only_where_it_changes_something(operator, db_path):
    raw = set_by(db_path, "raw")
    filtered = set_by(db_path, "filtered")
    set_by(db_path, "raw")
    current = set_by(db_path, "filtered")  # same type as `filtered`, and current
    for path in ("/", "/history"):
        listed = entries(page(operator.get(path)))
        offered = {
            id_ for id_, entry in listed.items() if entry.find("button", cls="revert-button")
        }
        assert offered == {raw.id, raw.id + 2}, path
        assert current.id not in offered and filtered.id not in offered
        button = listed[raw.id].one("button", cls="revert-button")
        assert button.get("aria-label") == f"Revert to raw (change #{raw.id})"
        assert button.text() == "Revert to raw"


def test_revert_from_the_dashboard_confirms_then_writes_a_new_row(operator, db_path):
    first = set_by(db_path, "filtered")
    second = set_by(db_path, "aggregated")
    revert_form = entries(page(operator.get("/")))[first.id].one("form", cls="revert-form")
    assert revert_form.get("method") == "get"  # reviewing is safe to reload
    assert revert_form.get("hx-get") == f"/revert/{first.id}"
    fields = form_fields(revert_form)
    assert fields == {"expect_id": str(second.id)}
    review = page(operator.get(revert_form.get("action"), query_string=fields))
    assert review.one("h1").text() == "Pipeline"
    assert review.by_id("apply-change").text() == "Apply revert"
    assert row_count(db_path) == 2
    action, confirm = confirm_post(review)
    confirm["reason"] = "filtering again"  # required, as for every change
    applied = operator.post(action, data=confirm)
    assert applied.status_code == 302 and applied.headers["Location"] == "/"
    current = current_of(db_path)
    assert row_count(db_path) == 3 and current.pipeline_type == "filtered"
    assert current.metadata["reverts_to"] == first.id and current.updated_by == "alice"
    assert page(operator.get("/")).by_id("flash").text() == (
        f"Pipeline reverted to filtered (change #{first.id}) as change #{current.id}"
    )


def test_revert_from_history_stays_on_history_and_comes_back_to_it(operator, db_path):
    first = set_by(db_path, "filtered", who="carol")
    set_by(db_path, "aggregated", who="carol")
    listing = "/history?operator=carol&pipeline_type=filtered"
    revert_form = entries(page(operator.get(listing)))[first.id].one("form", cls="revert-form")
    assert revert_form.get("method") == "get" and revert_form.get("hx-get") is None
    fields = form_fields(revert_form)
    assert urlsplit(fields["next"]).path == "/history"
    back = parse_qs(urlsplit(fields["next"]).query)
    assert back == {"operator": ["carol"], "pipeline_type": ["filtered"]}
    review = page(operator.get(revert_form.get("action"), query_string=fields))
    assert review.one("h1").text() == "History"  # confirmed where it started
    assert review.by_id("revert-panel").find(id="confirm-form")
    assert review.by_id("cancel-change").get("href") == fields["next"]
    action, confirm = confirm_post(review)
    assert confirm["next"] == fields["next"]
    confirm["reason"] = "filtering again"
    applied = operator.post(action, data=confirm)
    assert applied.status_code == 302 and applied.headers["Location"] == fields["next"]
    after = page(operator.get(applied.headers["Location"]))
    assert "Pipeline reverted to filtered" in after.by_id("flash").text()
    assert after.find(id="revert-panel") is None
    assert current_of(db_path).pipeline_type == "filtered"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/history",
        "//evil.example/history",
        "/\\evil.example",
        "/history/../evil",
        "/history\r\nSet-Cookie: x=1",
        "javascript:alert(1)",
    ],
)
def test_revert_next_never_leaves_the_site(operator, db_path, target):
    first = set_by(db_path, "filtered")
    set_by(db_path, "aggregated")
    data = {"expect_id": "2", "next": target, "reason": "back"}
    response = operator.post(f"/revert/{first.id}/apply", data=data)
    assert response.status_code == 302
    assert response.headers["Location"] in ("/", "/history"), response.headers["Location"]


@pytest.mark.parametrize(
    ("kind", "message"),
    [("current", "already the current pipeline"), ("missing", "no change #99")],
)
def test_revert_that_would_change_nothing_is_refused_on_review(operator, db_path, kind, message):
    set_by(db_path, "filtered")
    set_by(db_path, "aggregated")
    target = 2 if kind == "current" else 99
    document = page(operator.get(f"/revert/{target}?next=/history"), 400)
    assert message in document.by_id("panel-message").text()
    assert document.find(id="confirm-form") is None
    assert row_count(db_path) == 2


def test_forged_revert_to_an_unknown_type_is_refused(operator, hostile_db):
    data = {"expect_id": "6", "next": "/history", "reason": ""}
    document = page(operator.post("/revert/2/apply", data=data), 400)
    assert UNMANAGED in document.by_id("panel-message").text()
    assert document.find(id="confirm-form") is None
    assert current_of(hostile_db).id == 6


def test_stale_revert_is_a_conflict_that_keeps_its_way_back(operator, db_path):
    first = set_by(db_path, "filtered")
    set_by(db_path, "aggregated")
    data = {"expect_id": str(first.id), "next": "/history", "reason": "back to filtered"}
    document = page(operator.post(f"/revert/{first.id}/apply", data=data), 409)
    assert document.one("h1").text() == "History"
    fields = form_fields(document.by_id("conflict").one("form"))
    assert fields["next"] == "/history" and fields["reason"] == "back to filtered"
    assert row_count(db_path) == 2


# -- headings, labels, time zones --------------------------------------------------------------


def outline_pages(operator, db_path):
    """Every page and step an operator meets, parsed."""
    first = set_by(db_path, "filtered")
    set_by(db_path, "aggregated")
    form = {"pipeline_type": "schematized", "reason": "r", "expect_id": "2"}
    stale = {**form, "expect_id": "1"}
    return {
        "/": page(operator.get("/")),
        "/history": page(operator.get("/history")),
        "/timeline": page(operator.get("/timeline")),
        "/login": page(operator.get("/login")),
        "confirm": page(operator.post("/change", data=form)),
        "conflict": page(operator.post("/change/apply", data=stale), 409),
        "revert on history": page(operator.get(f"/revert/{first.id}?next=/history")),
        "revert conflict": page(
            operator.post(
                f"/revert/{first.id}/apply",
                data={"expect_id": "1", "next": "/history", "reason": "back"},
            ),
            409,
        ),
        "error": page(operator.get("/history.json?pipeline_type=nope"), 400),
    }


def test_every_page_has_one_h1_no_repeated_heading_and_no_skipped_level(operator, db_path):
    for name, document in outline_pages(operator, db_path).items():
        outline = headings(document)
        assert [level for level, _ in outline].count(1) == 1, (name, outline)
        texts = [text.casefold() for _, text in outline]
        assert len(texts) == len(set(texts)), (name, outline)
        for (before, _), (level, _) in zip(outline, outline[1:], strict=False):
            assert level <= before + 1, (name, outline)


def test_timeline_ticks_say_utc(operator, db_path):
    set_by(db_path, "filtered")
    for path in ("/", "/timeline"):
        labels = page(operator.get(path)).find_all("text", cls="tick-label")
        assert labels and all(label.text().endswith(" UTC") for label in labels)


def test_navigation_marks_the_page_and_sign_in_comes_back_to_it(web_app):
    client = web_app.test_client()
    document = page(client.get("/history?pipeline_type=raw"))
    assert document.one("a", aria_current="page").text() == "History"
    link = document.by_id("login-link")
    assert parse_qs(urlsplit(link.get("href")).query)["next"] == ["/history?pipeline_type=raw"]


# -- escaping, history, timeline ---------------------------------------------------------------


def test_hostile_reason_and_name_are_escaped_everywhere(operator, db_path):
    set_by(db_path, "raw", who="<script>alert('who')</script>", reason="first")
    set_by(db_path, "filtered", who='"><img src=x onerror=alert(1)>', reason="<script>x()</script>")
    for path in ("/", "/history", "/timeline", "/poll?since=0"):
        document = page(operator.get(path))
        assert not document.find_all("img"), path
        assert all(script.get("src") for script in document.find_all("script")), path
        if path != "/timeline":  # the timeline shows no reasons
            assert "<script>x()</script>" in document.text(), path
    assert "<script>alert('who')</script>" in page(operator.get("/history")).text()


def test_history_filters_paginates_and_exports_the_cli_records(operator, db_path):
    for index in range(30):
        set_by(db_path, ("raw", "filtered")[index % 2], who=("bob", "carol")[index % 3 == 0])
    document = page(operator.get("/history"))
    assert document.one("p", cls="summary").text().startswith("30 changes.")
    assert document.find(id="next-page") and document.find(id="prev-page") is None
    assert len(entries(document)) == 25
    older = page(operator.get("/history?before=6"))
    assert list(entries(older)) == [5, 4, 3, 2, 1]
    assert older.find(id="prev-page") and older.find(id="next-page") is None
    filtered = page(operator.get("/history?pipeline_type=filtered&operator=carol"))
    with PipelineStore(db_path) as store:
        expected = store.history(limit=100, pipeline_type="filtered", updated_by="carol")
        exported = operator.get("/history.json?pipeline_type=filtered&operator=carol").get_json()
        assert exported == [change.to_dict() for change in expected]
        everything = store.history(limit=100)
    assert filtered.one("p", cls="summary").text().startswith(f"{len(expected)} changes")
    csv_rows = html(operator.get("/history.csv")).strip().splitlines()
    assert csv_rows[0].startswith("id,pipeline_type,bucket,updated_at")
    assert len(csv_rows) == 1 + len(everything)


def test_history_time_range_filter(operator, db_path):
    set_by(db_path, "filtered")
    summary = page(operator.get("/history?since=2000-01-01T00:00")).one("p", cls="summary")
    assert summary.text().startswith("1 change.")
    summary = page(operator.get("/history?until=2000-01-01T00:00")).one("p", cls="summary")
    assert summary.text().startswith("0 changes.")
    assert operator.get("/history?since=yesterday").status_code == 400
    assert operator.get("/history.json?pipeline_type=nope").status_code == 400


def segments(document, window):
    figure = document.one("figure", data_window=window)
    return [
        (rect.get("data-type"), float(rect.get("x").rstrip("%")), float(rect.get("width")[:-1]))
        for rect in figure.find_all("rect")
    ]


def test_timeline_segments_follow_the_changes(operator, db_path):
    set_by(db_path, "filtered")
    document = page(operator.get("/timeline"))
    (raw, raw_x, raw_width), (new, new_x, new_width) = segments(document, "day")
    # Before the change the default (raw) was in force, then filtered up to now.
    assert (raw, new) == ("raw", "filtered")
    assert (raw_x, raw_width) == (0, pytest.approx(100, abs=0.01))
    # A change of this very second is drawn narrow but visible, at the right edge, over raw.
    assert new_width >= 0.8 and new_x + new_width == pytest.approx(100, abs=0.01)
    svg = document.one("figure", data_window="day").one("svg")
    assert svg.get("viewBox") is None  # labels keep their size on a phone
    assert document.find("ul", cls="timeline-notes") is None  # "this second" is not the future


def insert_rows(db_path, rows, table_sql=None):
    """Insert rows with plain sqlite3, as another tool would (the store stamps "now")."""
    conn = sqlite3.connect(db_path)
    if table_sql:
        conn.execute(table_sql)
    for row in rows:
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata)"
            " VALUES (?, ?, ?, ?)",
            row,
        )
    conn.commit()
    conn.close()


def test_timeline_geometry_from_changes_at_known_times(db_path, store):
    from datetime import UTC, datetime, timedelta

    from webapp.core.timeline import timelines

    store.initialize()
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    insert_rows(
        db_path,
        [
            (kind, (now - timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S"), "x", None)
            for hours, kind in ((30, "filtered"), (12, "aggregated"), (6, "raw"))
        ],
    )
    _, day, week = timelines(store, now)
    assert [(s.kind, s.x, s.width) for s in day.segments] == [
        ("filtered", 0, 50),
        ("aggregated", 50, 25),
        ("raw", 75, 25),
    ]
    assert [tick.label for tick in day.ticks] == ["18:00 UTC", "00:00 UTC", "06:00 UTC"]
    # Ticks sit on multiples of six hours from midnight, wherever the window starts...
    _, late_day, _ = timelines(store, now.replace(minute=5))
    assert [tick.label for tick in late_day.ticks] == ["18:00 UTC", "00:00 UTC", "06:00 UTC"]
    # ...and one that close to an edge has no label: it would be cut off on a phone.
    _, early_day, _ = timelines(store, now - timedelta(hours=6, minutes=-5))
    assert [tick.label for tick in early_day.ticks] == ["12:00 UTC", "18:00 UTC", "00:00 UTC"]
    _, edge_day, _ = timelines(store, now + timedelta(hours=1))
    assert [tick.label for tick in edge_day.ticks] == ["18:00 UTC", "00:00 UTC", "06:00 UTC"]
    assert [s.kind for s in week.segments] == ["raw", "filtered", "aggregated", "raw"]
    assert week.segments[0].change.is_default
    # Seven day labels do not fit a phone: every other one is dropped there.
    assert [tick.minor for tick in week.ticks] == [i % 2 == 1 for i in range(len(week.ticks))]
    assert not any(tick.minor for tick in day.ticks)


# -- rows other tools wrote (issue #7) ---------------------------------------------------------

# The seed table without its CHECK: another tool's, which accepts anything.
NO_CHECK_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT,"
    " updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, metadata TEXT)"
)
NESTED = "[" * 5000 + "]" * 5000
LONG_NAME = "operator-" + "x" * 180


def insert_hostile_rows(db_path, bad_time="CAST(x'ff' AS TEXT)"):
    """Rows as other tools write them; the newest ('emergency', no time, nobody) is current."""
    insert_rows(
        db_path,
        [
            ("raw", "2026-11-20 10:00:00", "alice", '{"reason": "first", "source": "cli"}'),
            ("emergency", "yesterday", None, "not json"),
            ("filtered", "2099-01-01 00:00:00", "bob", '{"reason": NaN}'),
            ("aggregated", "2026-11-26 10:00:00", LONG_NAME, NESTED),
        ],
        NO_CHECK_TABLE,
    )
    conn = sqlite3.connect(db_path)
    bad = "CAST(x'ff' AS TEXT)"  # not UTF-8: no Python parameter can store it
    conn.execute(f"INSERT INTO pipeline_config VALUES (NULL, {bad}, {bad_time}, {bad}, {bad})")
    conn.execute("INSERT INTO pipeline_config VALUES (NULL, 'emergency', NULL, NULL, NULL)")
    conn.commit()
    conn.close()
    return db_path


@pytest.fixture
def hostile_db(db_path):
    return insert_hostile_rows(db_path)


HOSTILE_PAGES = [
    "/",
    "/history",
    "/timeline",
    "/poll?since=0",
    "/change",
    "/revert/3?next=/history",
    "/revert/4",
    "/history?pipeline_type=raw",
    "/history?operator=bob",
    "/history.json",
    "/history.csv",
]


@pytest.mark.parametrize("headers", [{}, HX], ids=["page", "fragment"])
def test_every_page_and_fragment_answers_with_hostile_rows(operator, hostile_db, headers):
    for path in HOSTILE_PAGES:
        with operator.get(path, headers=headers) as response:  # exports stream: read them out
            body = html(response)
            assert response.status_code == 200, (path, body[:2000])
        if "history." not in path:
            parse(body)


def test_unknown_type_is_shown_as_such_everywhere(operator, hostile_db):
    document = page(operator.get("/"))
    current = document.by_id("current")
    assert current.get("data-pipeline-type") == "emergency"
    assert current.one(cls="type").text() == f"'emergency' ({UNMANAGED})"
    assert "type-other" in current.one(cls="type").classes
    assert current.find("code", cls="bucket") is None and current.by_id("unmanaged-notice")
    assert "unknown operator" in current.text() and "unknown time" in current.text()
    buckets = document.by_id("buckets")
    assert buckets.find("tr", cls="active") is None
    assert UNMANAGED in buckets.by_id("buckets-notice").text()
    for listed in (entries(document.by_id("recent")), entries(page(operator.get("/history")))):
        assert listed[6].one("strong", cls="to").text() == f"'emergency' ({UNMANAGED})"
        assert listed[6].one(cls="current-badge").text() == "current"
        assert UNMANAGED in listed[5].one("strong", cls="to").text()  # the invalid UTF-8 one
        assert not listed[2].find(cls="revert-button") and not listed[6].find(cls="revert-button")
        assert listed[3].find(cls="revert-button")  # ours, and not the current type
    poll = page(operator.get("/poll?since=1", headers=HX))
    assert (
        poll.by_id("announcer").text()
        == f"Pipeline changed to 'emergency' ({UNMANAGED}) by an unknown operator"
    )


def test_unreadable_times_and_metadata_are_shown_as_stored(operator, hostile_db):
    listed = entries(page(operator.get("/history")))
    yesterday = listed[2].one("span", cls="when")
    assert yesterday.one(cls="stored-time").text() == "yesterday"
    assert "unknown time" in yesterday.text() and yesterday.find("time") is None
    assert "no time recorded" in listed[6].one("span", cls="when").text()
    future = listed[3].one("span", cls="when")
    assert future.one("time").text() == "2099-01-01 00:00:00 UTC"
    assert "in the future" in future.text()
    assert "not readable JSON" in listed[2].one("p", cls="note").text()
    assert "not readable JSON" in listed[3].one("p", cls="note").text()  # {"reason": NaN}
    assert "not readable JSON" in listed[4].one("p", cls="note").text()  # nested too deep
    assert listed[4].one("span", cls="who").text() == LONG_NAME
    assert "\ufffd" in listed[5].one("span", cls="who").text()
    assert listed[6].one("p", cls="reason").text().endswith("No reason recorded")
    # No "previous" in its metadata: the type of the row before it (issue 16.4, as every path).
    assert listed[5].one("span", cls="from").text() == "aggregated"  # change #5
    assert listed[1].one("span", cls="from").text() == "(default)"  # #1: no row before it


def test_timeline_draws_other_types_and_odd_times_without_breaking(operator, hostile_db):
    document = page(operator.get("/timeline"))
    for window in ("hour", "day", "week"):
        drawn = segments(document, window)
        assert all(
            kind in {"raw", "schematized", "filtered", "aggregated", "other"} for kind, *_ in drawn
        )
        for _, x, width in drawn:
            assert x >= 0 and width > 0 and x + width <= 100.001
        # What is in force now is the current change ('emergency', no time): the last segment.
        figure = document.one("figure", data_window=window)
        last = figure.find_all("rect")[-1]
        assert (last.get("data-type"), last.get("data-change-id")) == ("other", "6")
        assert "seg-other" in last.classes
        notes = figure.one("ul", cls="timeline-notes").text()
        assert "#3" in notes and "in the future" in notes
        assert "Not drawn: change #2" in notes and "yesterday" in notes
    for rect in document.find_all("rect"):
        assert rect.classes <= {
            "seg",
            "seg-raw",
            "seg-schematized",
            "seg-filtered",
            "seg-aggregated",
            "seg-other",
        }
    assert "not a type this tool manages" in document.by_id("legend-other").text()


def test_conflict_names_an_unknown_type(operator, hostile_db):
    form = {"pipeline_type": "filtered", "reason": "mine", "expect_id": "5"}
    conflict = page(operator.post("/change/apply", data=form), 409).by_id("conflict")
    assert f"'emergency' ({UNMANAGED})" in conflict.one("strong", cls="type").text()
    assert "unknown time" in conflict.text() and "an unknown operator" in conflict.text()
    assert conflict.by_id("apply-on-top")


def test_an_unknown_current_type_can_be_replaced_from_the_form(operator, db_path):
    # Not on hostile_db: its non-UTF-8 updated_at fails every write in the store (reported).
    hostile_db = insert_hostile_rows(db_path, bad_time="'2026-11-21 00:00:00'")
    select = page(operator.get("/")).by_id("change-form").one("select", name="pipeline_type")
    assert not any("(current)" in option.text() for option in select.find_all("option"))
    form = {"pipeline_type": "raw", "reason": "back to a known type", "expect_id": "6"}
    action, fields = confirm_post(page(operator.post("/change", data=form)))
    assert operator.post(action, data=fields).status_code == 302
    assert current_of(hostile_db).pipeline_type == "raw"


# -- read-only, login, headers, CSRF, errors ---------------------------------------------------


def test_read_only_dashboard_without_accounts_says_how_to_add_one(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, users=False)
    client = app.test_client()
    document = page(client.get("/"))
    notice = document.by_id("readonly-notice").text()
    assert "flask --app webapp user add NAME --users-file instance/users.htpasswd" in notice
    assert document.find(id="change-form") is None
    response = client.post("/change/apply", data={"pipeline_type": "raw", "expect_id": "0"})
    assert "read-only" in page(response, 403).by_id("panel-message").text()


def test_read_requires_login_redirects_pages_and_polls(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, READ_REQUIRES_LOGIN=True)
    client = app.test_client()
    response = client.get("/history?before=2")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/history?before%3D2"
    assert client.get("/poll?since=0", headers=HX).headers["HX-Redirect"].startswith("/login")
    assert client.get("/login").status_code == 200
    log_in(client)
    assert client.get("/history").status_code == 200


@pytest.mark.parametrize("path", ["/", "/history", "/timeline", "/login", "/poll?since=9", "/nope"])
def test_security_headers_on_every_response(web_app, path):
    response = web_app.test_client().get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_static_files_carry_headers_and_no_inline_script_or_style(operator, db_path):
    with operator.get("/static/app.js") as response:
        assert response.status_code == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for name, document in outline_pages(operator, db_path).items():
        scripts = document.find_all("script")
        assert all(s.get("src", "").startswith("/static/") and not s.text() for s in scripts), name
        for element in document.iter():
            assert "style" not in element.attrs, (name, element)
            assert not any(attr.startswith("hx-on") for attr in element.attrs), (name, element)
    htmx_path = page(operator.get("/")).find("script", src=True).get("src")
    with operator.get(htmx_path) as htmx:
        assert htmx.status_code == 200


def test_csrf_missing_is_400_and_nothing_written(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert log_in(client).status_code == 302
    form = {"pipeline_type": "filtered", "reason": "r", "expect_id": "0"}
    for path in ("/change", "/change/apply", "/revert/1/apply", "/logout"):
        assert client.post(path, data=form).status_code == 400, path
    assert row_count(db_path) == 0
    refused = client.post("/change/apply", data=form, headers=HX)
    assert refused.status_code == 400 and "<html" not in html(refused)
    assert "The CSRF token is missing. Reload the page and try again." in html(refused)
    token = csrf_from(html(client.get("/")))
    # htmx sends the token as a header (static/app.js); a form sends it as a field.
    headers = {**HX, "X-CSRFToken": token}
    assert client.post("/change/apply", data=form, headers=headers).status_code == 200
    assert row_count(db_path) == 1


def test_login_without_csrf_token_is_refused(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, WTF_CSRF_ENABLED=True)
    response = app.test_client().post("/login", data={"username": "alice", "password": "x"})
    assert response.status_code == 400


def test_database_problem_is_one_readable_line(tmp_path, monkeypatch):
    app = make_app(tmp_path / "missing.db", tmp_path, monkeypatch)
    response = app.test_client().get("/")
    assert response.status_code == 503
    assert "database not found" in html(response) and "Traceback" not in html(response)
