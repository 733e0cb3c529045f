"""Dashboard views with the test client: pages, fragments, polling, changes, reverts, escaping."""

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from weblib import csrf_from, log_in, make_app

from webapp.store import PipelineStore
from webapp.timefmt import iso

HX = {"HX-Request": "true"}


def set_by(db_path, pipeline_type, who="bob", reason="because"):
    """Write a change through another store (its own connection), as the CLI would."""
    with PipelineStore(db_path, write_timeout=5) as other:
        return other.set(pipeline_type, updated_by=who, reason=reason, source="cli").change


def row_count(db_path):
    with PipelineStore(db_path) as store:
        return store.count()


def html(response):
    return response.get_data(as_text=True)


def test_dashboard_page_shows_current_buckets_form_recent(operator, db_path):
    change = set_by(db_path, "filtered", who="bob", reason="enable filtering")
    page = html(operator.get("/"))
    assert page.startswith("<!doctype html>")
    current = re.search(r'<section id="current"[^>]*>', page).group(0)
    assert 'data-pipeline-type="filtered"' in current
    assert f'data-change-id="{change.id}"' in current
    assert "enable filtering" in page and "bob" in page and "enriched" in page
    assert re.search(r'<tr data-type="filtered" class="active" aria-current="true">', page)
    assert len(re.findall(r'<tr data-type="\w+"', page)) == 4
    assert f'name="expect_id" type="hidden" value="{change.id}"' in page
    assert 'id="review-change"' in page and f'data-change-id="{change.id}"' in page
    assert '<svg viewBox="0 0 1000 56"' in page


def test_fragment_for_htmx_full_page_otherwise(operator):
    fragment = html(operator.get("/change?pipeline_type=aggregated&reason=x", headers=HX))
    assert "<html" not in fragment and 'id="change-form"' in fragment
    assert '<option selected value="aggregated">' in fragment
    boosted = html(operator.get("/change", headers={**HX, "HX-Boosted": "true"}))
    assert boosted.startswith("<!doctype html>")
    assert html(operator.get("/change")).startswith("<!doctype html>")
    history = html(operator.get("/history", headers=HX))
    assert history.lstrip().startswith('<section id="history-results"')
    restore = operator.get("/history", headers={**HX, "HX-History-Restore-Request": "true"})
    assert html(restore).startswith("<!doctype html>")


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
    assert response.status_code == 200 and f'data-change-id="{second.id}"' in html(response)
    assert operator.get(f"/poll?since={second.id}", headers=HX).status_code == 204


# Another process (an operator's shell) that sets the pipeline and closes its connection.
SET_ELSEWHERE = """
import sys
from webapp.store import PipelineStore
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
    assert f'data-change-id="{result.stdout.strip()}"' in html(response)


def test_poll_on_a_never_set_database_is_204_at_zero(operator):
    assert operator.get("/poll?since=0").status_code == 204


def test_changed_poll_returns_every_fragment_out_of_band(operator, db_path):
    first = set_by(db_path, "schematized")
    second = set_by(db_path, "aggregated", who="carol", reason="nightly rollup")
    response = operator.get(f"/poll?since={first.id}", headers=HX)
    assert response.status_code == 200
    body = html(response)
    for fragment in ("current", "buckets", "recent", "timeline"):
        assert re.search(rf'id="{fragment}"[^>]*hx-swap-oob="true"', body, re.S), fragment
    assert f'data-change-id="{second.id}"' in body
    assert 'data-type="aggregated" class="active"' in body
    assert '<div id="announcer" hx-swap-oob="innerHTML">' in body
    assert "Pipeline changed to aggregated by carol" in body
    assert f'id="since" name="since" value="{second.id}"' in body
    assert response.headers["HX-Trigger"] == f'{{"pipeline-changed": {{"id": {second.id}}}}}'
    assert 'id="change-form"' not in body  # the reason being typed is never replaced


def test_review_then_apply_writes_once_as_the_operator(operator, db_path):
    form = {"pipeline_type": "filtered", "reason": "enable filtering", "expect_id": "0"}
    review = operator.post("/change", data=form)
    assert review.status_code == 200
    assert 'id="confirm-form"' in html(review) and 'id="apply-change"' in html(review)
    assert row_count(db_path) == 0  # reviewing writes nothing
    applied = operator.post("/change/apply", data=form)
    assert applied.status_code == 302 and applied.headers["Location"] == "/"
    page = html(operator.get("/"))
    assert 'id="flash"' in page and "Pipeline set to filtered" in page
    with PipelineStore(db_path) as store:
        current = store.current()
    assert (current.pipeline_type, current.updated_by, current.source) == (
        "filtered",
        "alice",
        "web",
    )


def test_updated_by_comes_from_the_login_not_the_form(operator, db_path):
    form = {"pipeline_type": "raw", "reason": "r", "expect_id": "0", "updated_by": "mallory"}
    operator.post("/change/apply", data=form)
    with PipelineStore(db_path) as store:
        assert store.current().updated_by == "alice"


def test_htmx_apply_returns_panel_result_and_live_fragments(operator, db_path):
    form = {"pipeline_type": "aggregated", "reason": "rollup", "expect_id": "0"}
    body = html(operator.post("/change/apply", data=form, headers=HX))
    assert '<p id="result" role="status" class="ok">Pipeline set to aggregated</p>' in body
    assert re.search(r'id="current"[^>]*hx-swap-oob="true"', body, re.S)
    assert 'name="expect_id" type="hidden" value="1"' in body  # fresh form on the new base


def test_missing_reason_is_shown_beside_the_field(operator, db_path):
    response = operator.post("/change", data={"pipeline_type": "raw", "expect_id": "0"})
    assert response.status_code == 422
    body = html(response)
    assert re.search(r'<textarea[^>]*aria-invalid="true"', body)
    assert '<span class="field-error" id="reason-error">' in body
    assert row_count(db_path) == 0


def test_reason_optional_when_configured(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, REQUIRE_REASON=False)
    client = app.test_client()
    log_in(client)
    form = {"pipeline_type": "filtered", "reason": "", "expect_id": "0"}
    assert client.post("/change/apply", data=form).status_code == 302
    assert row_count(db_path) == 1


def test_unknown_type_is_a_field_error(operator, db_path):
    response = operator.post("/change", data={"pipeline_type": "x", "reason": "r", "expect_id": 0})
    assert response.status_code == 422 and "field-error" in html(response)


def test_anonymous_write_is_refused_and_nothing_written(web_app, db_path):
    client = web_app.test_client()
    form = {"pipeline_type": "filtered", "reason": "r", "expect_id": "0"}
    for path in ("/change", "/change/apply"):
        response = client.post(path, data=form)
        assert response.status_code == 403
        assert "Sign in as an operator" in html(response)
    assert row_count(db_path) == 0
    assert 'id="change-form"' not in html(client.get("/"))


def test_stale_write_is_refused_explained_and_can_go_on_top(operator, db_path):
    page = html(operator.get("/"))
    assert 'name="expect_id" type="hidden" value="0"' in page
    theirs = set_by(db_path, "schematized", who="bob", reason="validate first")
    form = {"pipeline_type": "filtered", "reason": "mine", "expect_id": "0"}
    response = operator.post("/change/apply", data=form)
    assert response.status_code == 409
    body = html(response)
    conflict = body[body.index('id="conflict"') :]
    assert "nothing was written" in conflict
    assert "schematized" in conflict and "bob" in conflict and "validate first" in conflict
    assert f'<time datetime="{iso(theirs.updated_at)}"' in conflict
    assert row_count(db_path) == 1
    on_top = re.search(r'name="expect_id" value="(\d+)">\s*<button[^>]*id="apply-on-top"', body)
    assert on_top and int(on_top.group(1)) == theirs.id
    again = operator.post("/change/apply", data={**form, "expect_id": on_top.group(1)})
    assert again.status_code == 302
    with PipelineStore(db_path) as store:
        current = store.current()
    assert current.pipeline_type == "filtered" and current.metadata["previous_id"] == theirs.id


def test_revert_confirms_then_writes_a_new_row_naming_its_target(operator, db_path):
    first = set_by(db_path, "filtered")
    second = set_by(db_path, "aggregated")
    page = html(operator.get("/"))
    entries = re.findall(r'<li data-change-id="(\d+)"[^>]*>(.*?)</li>', page, re.S)
    with_button = {int(id_) for id_, body in entries if "revert-button" in body}
    assert with_button == {first.id}  # every entry but the current one
    data = {"expect_id": str(second.id)}
    review = operator.post(f"/revert/{first.id}", data=data)
    assert review.status_code == 200 and 'id="apply-change"' in html(review)
    assert row_count(db_path) == 2
    assert operator.post(f"/revert/{first.id}/apply", data=data).status_code == 302
    with PipelineStore(db_path) as store:
        current = store.current()
        assert store.count() == 3
    assert current.pipeline_type == "filtered"
    assert current.metadata["reverts_to"] == first.id and current.updated_by == "alice"


def test_stale_revert_is_a_conflict(operator, db_path):
    first = set_by(db_path, "filtered")
    set_by(db_path, "aggregated")
    response = operator.post(f"/revert/{first.id}/apply", data={"expect_id": str(first.id)})
    assert response.status_code == 409 and 'id="conflict"' in html(response)
    assert row_count(db_path) == 2


def test_hostile_reason_and_name_are_escaped_everywhere(operator, db_path):
    set_by(db_path, "raw", who="<script>alert('who')</script>", reason="first")
    set_by(db_path, "filtered", who='"><img src=x onerror=alert(1)>', reason="<script>x()</script>")
    pages = [operator.get(path) for path in ("/", "/history", "/timeline", "/poll?since=0")]
    for response in pages:
        body = html(response)
        assert "<script>alert" not in body and "<script>x()" not in body
        assert "<img src=x" not in body
    assert "&lt;script&gt;x()&lt;/script&gt;" in html(pages[0])
    assert "&lt;script&gt;alert(&#39;who&#39;)&lt;/script&gt;" in html(pages[1])


def test_history_filters_paginates_and_exports_the_cli_records(operator, db_path):
    for index in range(30):
        set_by(db_path, ("raw", "filtered")[index % 2], who=("bob", "carol")[index % 3 == 0])
    page = html(operator.get("/history"))
    assert "30 changes." in page and 'id="next-page"' in page and 'id="prev-page"' not in page
    assert len(re.findall(r'<li data-change-id="\d+"', page)) == 25
    older = html(operator.get("/history?before=6"))
    assert re.findall(r'<li data-change-id="(\d+)"', older) == ["5", "4", "3", "2", "1"]
    assert 'id="prev-page"' in older and 'id="next-page"' not in older
    filtered = html(operator.get("/history?pipeline_type=filtered&operator=carol"))
    with PipelineStore(db_path) as store:
        expected = store.history(limit=100, pipeline_type="filtered", updated_by="carol")
        exported = operator.get("/history.json?pipeline_type=filtered&operator=carol").get_json()
        assert exported == [change.to_dict() for change in expected]
        everything = store.history(limit=100)
    assert f"{len(expected)} changes" in filtered
    csv_rows = html(operator.get("/history.csv")).strip().splitlines()
    assert csv_rows[0].startswith("id,pipeline_type,bucket,updated_at")
    assert len(csv_rows) == 1 + len(everything)


def test_history_time_range_filter(operator, db_path):
    set_by(db_path, "filtered")
    assert "1 change." in html(operator.get("/history?since=2000-01-01T00:00"))
    assert "0 changes." in html(operator.get("/history?until=2000-01-01T00:00"))
    assert operator.get("/history?since=yesterday").status_code == 400
    assert operator.get("/history.json?pipeline_type=nope").status_code == 400


def test_timeline_segments_follow_the_changes(operator, db_path):
    set_by(db_path, "filtered")
    body = html(operator.get("/timeline"))
    day = body[body.index('data-window="day"') : body.index('data-window="week"')]
    # Before the change the default (raw) was in force, then filtered up to now.
    kinds = re.findall(r'<rect class="seg seg-(\w+)"', day)
    assert kinds == ["raw", "filtered"]
    boxes = [
        tuple(map(float, box)) for box in re.findall(r'x="([\d.]+)" y="0" width="([\d.]+)"', day)
    ]
    (raw_x, raw_width), (new_x, new_width) = boxes
    assert (raw_x, raw_width) == (0, pytest.approx(1000, abs=0.1))
    # A change of this very second is drawn narrow but visible, at the right edge, over raw.
    assert new_width >= 4 and new_x + new_width == pytest.approx(1000, abs=0.1)


def test_read_only_dashboard_without_accounts_says_how_to_add_one(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, users=False)
    client = app.test_client()
    page = html(client.get("/"))
    notice = page[page.index('id="readonly-notice"') :]
    assert "flask --app webapp user add NAME --users-file instance/users.htpasswd" in notice
    assert 'id="change-form"' not in page
    response = client.post("/change/apply", data={"pipeline_type": "raw", "expect_id": "0"})
    assert response.status_code == 403 and "read-only" in html(response)


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


def test_static_files_carry_headers_and_no_inline_script(web_app):
    client = web_app.test_client()
    with client.get("/static/app.js") as response:
        assert response.status_code == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = html(client.get("/"))
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="/static/' in attrs and not body for attrs, body in scripts)
    assert " style=" not in page and "hx-on" not in page
    htmx_path = re.search(r'src="(/static/htmx-[\d.]+\.min\.js)"', page)[1]
    with client.get(htmx_path) as htmx:
        assert htmx.status_code == 200


def test_csrf_missing_is_400_and_nothing_written(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert log_in(client).status_code == 302
    form = {"pipeline_type": "filtered", "reason": "r", "expect_id": "0"}
    for path in ("/change", "/change/apply", "/revert/1", "/logout"):
        assert client.post(path, data=form).status_code == 400, path
    assert row_count(db_path) == 0
    refused = client.post("/change/apply", data=form, headers=HX)
    assert refused.status_code == 400 and "<html" not in html(refused)
    assert "The CSRF token is missing. Reload the page and try again." in html(refused)
    token = csrf_from(html(client.get("/")))
    # htmx sends the token as a header (static/app.js); a form sends it as a field.
    assert (
        client.post("/change/apply", data=form, headers={**HX, "X-CSRFToken": token}).status_code
        == 200
    )
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


def test_timeline_geometry_from_changes_at_known_times(db_path, store):
    from datetime import UTC, datetime, timedelta

    from webapp.timeline import timelines

    store.initialize()
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    conn = sqlite3.connect(db_path)  # rows with chosen times: the store stamps "now"
    for hours_ago, kind in ((30, "filtered"), (12, "aggregated"), (6, "raw")):
        moment = (now - timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M:%S")
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by)"
            " VALUES (?, ?, 'x')",
            (kind, moment),
        )
    conn.commit()
    conn.close()
    day, week = timelines(store, now)
    assert [(s.pipeline_type, s.x, s.width) for s in day.segments] == [
        ("filtered", 0, 500),
        ("aggregated", 500, 250),
        ("raw", 750, 250),
    ]
    assert [tick.label for tick in day.ticks] == ["18:00", "00:00", "06:00"]
    # A tick a few minutes from the edge gets no label: it would be cut off.
    late_day, _ = timelines(store, now.replace(minute=5))
    assert [tick.label for tick in late_day.ticks] == ["18:00", "00:00", "06:00"]
    early_day, _ = timelines(store, now - timedelta(hours=6, minutes=-5))
    assert [tick.label for tick in early_day.ticks] == ["12:00", "18:00", "00:00"]
    assert [s.pipeline_type for s in week.segments] == ["raw", "filtered", "aggregated", "raw"]
    assert week.segments[0].change.is_default
