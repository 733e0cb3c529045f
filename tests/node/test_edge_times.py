"""Rows stamped at the edge of the calendar on every web path (issue 15.1, 15.2, 15.14).

Before issue 15 a row at ``0001-01-01T00:00:00+01:00`` answered 500 on every page, fragment,
export, ``/readyz`` and ``/metrics``, and a row at ``9999-12-31 23:59:59.999`` made every change
answer 500. Real SQLite files, the app in process.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from rowlib import insert_row, stamp_strings
from weblib import basic, csrf_from

EDGE_STAMPS = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00-01:00",  # representable: year 1, 01:00 UTC
    "0001-01-01 00:00:00",
    "9999-12-31T23:59:59.999999Z",
    "1970-01-01 00:00:00",
    -1,
    0,
    4102444800,
    "9999-12-31T23:59:59-01:00",
    "9999-12-31 23:59:59.999",
    "2026-06-30T23:59:60Z",
    "2026-01-01T24:00:00",
    "2026-01-01T10:00:00.123456789012345678901234567890Z",
]
PATHS = [
    "/",
    "/history",
    "/history?since=2026-01-01T00:00&until=2027-01-01T00:00",
    "/timeline",
    "/poll?since=0",
    "/change",
    "/revert/1",
    "/history.json",
    "/history.csv",
    "/readyz",
    "/metrics",
    "/api/pipeline",
    "/api/history",
]


@pytest.fixture
def edge_db(store, db_path):
    store.set("raw", updated_by="ops", reason="first")
    return db_path


@pytest.mark.parametrize("stamp", EDGE_STAMPS)
def test_every_page_fragment_export_and_probe_answers(operator, edge_db, stamp):
    insert_row(edge_db, "filtered", stamp)
    for path in PATHS:
        with operator.get(path) as response:
            response.get_data()  # the exports stream: read them to the end
            assert response.status_code < 500, (path, response.status_code)
    history = operator.get("/history").get_data(as_text=True)
    unknown = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "-1")
    if str(stamp) in (*unknown, "2026-06-30T23:59:60Z", "2026-01-01T24:00:00"):
        assert "unknown time" in history


@pytest.mark.parametrize("stamp", ["9999-12-31 23:59:59.999", "0001-01-01T00:00:00+01:00"])
def test_a_change_after_an_edge_row_is_written_by_api_and_form(operator, edge_db, stamp):
    insert_row(edge_db, "filtered", stamp)
    answer = operator.post(
        "/api/pipeline", json={"pipeline_type": "aggregated", "reason": "api"}, headers=basic()
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    token = csrf_from(operator.get("/").get_data(as_text=True))
    expect = answer.get_json()["id"]
    form = {"csrf_token": token, "pipeline_type": "schematized", "reason": "form"}
    applied = operator.post("/change/apply", data={**form, "expect_id": expect})
    assert applied.status_code == 302, applied.get_data(as_text=True)
    assert operator.get("/api/pipeline").get_json()["pipeline_type"] == "schematized"


def test_an_integer_stamp_reads_the_same_in_the_api_and_the_exports(operator, edge_db):
    insert_row(edge_db, "filtered", 1764800000)
    expected = "2025-12-03T22:13:20.000Z"
    assert operator.get("/api/pipeline").get_json()["updated_at"] == expected
    assert operator.get("/api/history").get_json()["changes"][0]["updated_at"] == expected
    assert operator.get("/history.json").get_json()[0]["updated_at"] == expected
    assert f",{expected}," in operator.get("/history.csv").get_data(as_text=True)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stamp=stamp_strings())
def test_any_stamp_text_leaves_every_page_and_probe_answering(operator, edge_db, stamp):
    insert_row(edge_db, "filtered", stamp)
    for path in PATHS:
        with operator.get(path) as response:
            response.get_data()
            assert response.status_code < 500, (path, response.status_code)
