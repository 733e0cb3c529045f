"""The JSON API: every status it promises (200, 304, 400, 401, 409, 412, 503)."""

import subprocess
import sys

import pytest
from weblib import basic, log_in, make_app

from webapp.accounts.throttle import FREE_ATTEMPTS
from webapp.core.store import PipelineStore


@pytest.fixture
def api(web_app):
    return web_app.test_client()


def post(api, body, headers=None, name="alice"):
    return api.post("/api/pipeline", json=body, headers={**basic(name), **(headers or {})})


def test_get_pipeline_default_then_etag_and_304(api, db_path):
    response = api.get("/api/pipeline")
    assert response.status_code == 200 and response.headers["ETag"] == '"0"'
    assert response.get_json() == {
        "id": None,
        "pipeline_type": "raw",
        "bucket": "ingestion",
        "managed": True,
        "updated_at": None,
        "updated_by": None,
        "metadata": {},
        "previous": None,
        "default": True,
    }
    with PipelineStore(db_path) as store:
        change = store.set("filtered", updated_by="bob", reason="r").change
    fresh = api.get("/api/pipeline", headers={"If-None-Match": '"0"'})
    assert fresh.status_code == 200 and fresh.get_json() == change.to_dict()
    assert fresh.headers["ETag"] == f'"{change.id}"'
    unchanged = api.get("/api/pipeline", headers={"If-None-Match": f'"{change.id}"'})
    assert unchanged.status_code == 304 and unchanged.data == b""


def test_history_pages_newest_first_with_a_cursor(api, db_path):
    with PipelineStore(db_path) as store:
        for pipeline_type in ("filtered", "raw", "aggregated", "schematized", "raw"):
            store.set(pipeline_type, updated_by="bob")
        expected = [change.to_dict() for change in store.history(limit=10)]
    first = api.get("/api/history?limit=2").get_json()
    assert first["changes"] == expected[:2] and first["next_before"] == expected[1]["id"]
    second = api.get(f"/api/history?limit=2&before={first['next_before']}").get_json()
    assert second["changes"] == expected[2:4]
    last = api.get(f"/api/history?limit=2&before={second['next_before']}").get_json()
    assert last == {"changes": expected[4:], "next_before": None}


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "before=abc"])
def test_history_bad_parameters_are_400(api, query):
    response = api.get(f"/api/history?{query}")
    assert response.status_code == 400 and "error" in response.get_json()


def test_post_sets_as_the_authenticated_operator(api, db_path):
    response = post(api, {"pipeline_type": "aggregated", "reason": "rollup", "updated_by": "x"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["changed"] is True and body["updated_by"] == "alice"
    assert body["metadata"]["source"] == "api" and body["metadata"]["reason"] == "rollup"
    assert response.headers["ETag"] == f'"{body["id"]}"'
    again = post(api, {"pipeline_type": "aggregated", "reason": "again"})
    assert again.status_code == 200 and again.get_json()["changed"] is False


@pytest.mark.parametrize(
    "headers",
    [{}, basic("alice", "wrong"), basic("nobody", "x"), {"Authorization": "Bearer abc"}],
)
def test_post_without_valid_credentials_is_401(api, db_path, headers):
    response = api.post(
        "/api/pipeline", json={"pipeline_type": "raw", "reason": "r"}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="Pipeline Manager"')
    assert "error" in response.get_json()
    with PipelineStore(db_path) as store:
        assert store.count() == 0


def test_repeated_wrong_basic_credentials_are_slowed_down(api, db_path):
    for _ in range(FREE_ATTEMPTS):
        assert (
            post(api, {"pipeline_type": "raw", "reason": "r"}, basic("alice", "no")).status_code
            == 401
        )
    locked = post(api, {"pipeline_type": "raw", "reason": "r"})  # right password, too soon
    assert locked.status_code == 429
    assert locked.get_json() == {"error": "too many failed logins: try again in 1 s"}
    assert locked.headers["Retry-After"] == "1"
    assert post(api, {"pipeline_type": "raw", "reason": "r"}, name="bob").status_code == 200


def test_session_cookie_does_not_authenticate_the_api(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert log_in(client).status_code == 302
    response = client.post("/api/pipeline", json={"pipeline_type": "raw", "reason": "r"})
    assert response.status_code == 401
    ok = client.post("/api/pipeline", json={"pipeline_type": "raw", "reason": "r"}, headers=basic())
    assert ok.status_code == 200  # no CSRF token needed with Basic auth


@pytest.mark.parametrize(
    "body, headers, message",
    [
        ({"pipeline_type": "bogus", "reason": "r"}, {}, "invalid pipeline type"),
        ({"reason": "r"}, {}, "body must be a JSON object"),
        (["raw"], {}, "body must be a JSON object"),
        ({"pipeline_type": "raw"}, {}, "reason is required"),
        ({"pipeline_type": "raw", "reason": 5}, {}, "reason must be text"),
        ({"pipeline_type": "raw", "reason": "r"}, {"If-Match": "latest"}, "If-Match"),
        ({"pipeline_type": "raw", "reason": "r", "expect_id": "1"}, {}, "expected id"),
    ],
)
def test_post_invalid_input_is_400_and_nothing_written(api, db_path, body, headers, message):
    response = post(api, body, headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    with PipelineStore(db_path) as store:
        assert store.count() == 0


def test_if_match_is_compare_and_set_412_when_stale(api, db_path):
    ok = post(api, {"pipeline_type": "filtered", "reason": "r"}, {"If-Match": '"0"'})
    assert ok.status_code == 200
    with PipelineStore(db_path) as store:
        theirs = store.set("aggregated", updated_by="bob").change
    stale = post(api, {"pipeline_type": "raw", "reason": "r"}, {"If-Match": ok.headers["ETag"]})
    assert stale.status_code == 412
    body = stale.get_json()
    assert "it is now aggregated" in body["error"] and "bob" in body["error"]
    assert body["current"] == theirs.to_dict()
    fresh = post(api, {"pipeline_type": "raw", "reason": "r"}, {"If-Match": f'"{theirs.id}"'})
    assert fresh.status_code == 200
    with PipelineStore(db_path) as store:
        assert store.count() == 3


def test_expect_id_in_the_body_is_409_when_stale(api, db_path):
    with PipelineStore(db_path) as store:
        store.set("aggregated", updated_by="bob")
    response = post(api, {"pipeline_type": "raw", "reason": "r", "expect_id": 0})
    assert response.status_code == 409 and "nothing was written" in response.get_json()["error"]


# Holds SQLite's write lock from another process until told to let go on stdin.
LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_write_lock_held_elsewhere_is_503_and_nothing_written(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, WRITE_TIMEOUT=0.2)
    api = app.test_client()
    assert post(api, {"pipeline_type": "filtered", "reason": "r"}).status_code == 200  # WAL on
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        response = post(api, {"pipeline_type": "raw", "reason": "r"})
        assert response.status_code == 503
        assert "database is busy" in response.get_json()["error"]
        assert api.get("/api/pipeline").get_json()["pipeline_type"] == "filtered"
    finally:
        holder.communicate("go\n", timeout=10)
    assert post(api, {"pipeline_type": "raw", "reason": "r"}).status_code == 200


def test_reads_need_basic_auth_when_configured(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, READ_REQUIRES_LOGIN=True)
    api = app.test_client()
    assert api.get("/api/pipeline").status_code == 401
    assert api.get("/api/history").status_code == 401
    assert api.get("/api/pipeline", headers=basic("bob")).status_code == 200
