"""The dashboard says where it is and whether it is ready; one rule for every reason; the
never-set mark; the last hour on the timeline (issue 16.5, web parts)."""

import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from htmldom import parse
from weblib import log_in, make_app

from webapp.core.store import PipelineStore
from webapp.core.timeline import timelines


def document(response, status=200):
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return parse(response.get_data(as_text=True))


def test_the_dashboard_names_its_host_and_database(operator, db_path):
    page = document(operator.get("/"))
    assert page.by_id("shown-host").text() == socket.gethostname()
    assert page.by_id("shown-database").text() == str(db_path)
    assert page.find(id="readiness-notice") is None  # ready: nothing to say


def test_the_dashboard_shows_what_readyz_would_refuse(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch)
    client = app.test_client()
    (tmp_path / "users.htpasswd").write_text("alice:$apr1$not$bcrypt\n")  # nobody can sign in
    readyz = client.get("/readyz")
    assert readyz.status_code == 503
    notice = document(client.get("/")).by_id("readiness-notice").text()
    assert readyz.get_json()["reason"] in notice and "/readyz answers 503" in notice


@pytest.mark.parametrize("path", ["/revert/1/apply"])
def test_a_revert_needs_a_reason_like_every_change(operator, db_path, path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="bob", reason="one")
        store.set("aggregated", updated_by="bob", reason="two")
    for reason in ("", "   "):
        page = document(operator.post(path, data={"expect_id": "2", "reason": reason}), 422)
        assert "Say why" in page.by_id("reason-error").text()
    review = document(operator.get("/revert/1"))
    reason = review.by_id("confirm-form").one("input", name="reason")
    assert "required" in reason.attrs and "placeholder" not in reason.attrs
    with PipelineStore(db_path) as store:
        assert store.count() == 2


def test_without_required_reasons_a_revert_records_its_own(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, REQUIRE_REASON=False)
    client = app.test_client()
    log_in(client)
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="bob", reason="one")
        store.set("aggregated", updated_by="bob", reason="two")
    assert client.post("/revert/1/apply", data={"expect_id": "2", "reason": ""}).status_code == 302
    with PipelineStore(db_path) as store:
        assert store.current().reason == "revert to change #1"


def test_a_poll_marks_a_never_set_database_as_the_form_does(operator, db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="bob", reason="one")
    trigger = json.loads(operator.get("/poll?since=0").headers["HX-Trigger"])
    assert trigger["pipeline-changed"]["mark"] == " (current)"
    db_path.unlink()  # a backup of the never-set database restored over it
    from conftest import make_sensor_db

    make_sensor_db(db_path)
    trigger = json.loads(operator.get("/poll?since=1").headers["HX-Trigger"])
    assert trigger["pipeline-changed"] == {
        "id": 0,
        "type": "raw",
        "mark": " (default: never set)",
    }
    option = document(operator.get("/")).by_id("change-form").one("option", value="raw")
    assert option.text().endswith("(default: never set)")


def test_the_last_hour_tells_apart_changes_minutes_apart(store):
    for pipeline_type in ("filtered", "aggregated", "schematized"):
        store.set(pipeline_type, updated_by="rollout", reason="step")
    now = datetime.now(UTC) + timedelta(minutes=10)
    hour, day, _ = timelines(store, now)
    assert hour.name == "hour" and hour.title == "Last hour"
    assert [s.kind for s in hour.segments][-1] == "schematized"
    assert all(s.title.startswith(s.change.type_label) for s in hour.segments)
    # In the hour, ten minutes are a sixth of the bar; in the day, under one percent.
    assert hour.segments[-1].width > 15 and day.segments[-1].width < 1.5
