"""What the server decides is never taken from the request (issue 15.3): the base a change or
revert confirmation carries is the change the server read when it reviewed it, whatever a
crafted link or a stale page names."""

import sqlite3

import pytest
from htmldom import parse

from webapp.core.store import PipelineStore

HOSTILE_IDS = ["{next}", "abc", "٣", "-1", "99999999999999999999999", "1e3", " 1", ""]


def set_by(db_path, pipeline_type, who="bob"):
    with PipelineStore(db_path, write_timeout=5) as other:
        return other.set(pipeline_type, updated_by=who, reason="theirs", source="cli").change


def document(response, status=200):
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return parse(response.get_data(as_text=True))


def crafted(db_path, named):
    """Set a first change; return it and a change request naming ``named`` as its base."""
    base = set_by(db_path, "filtered")
    return base, {
        "pipeline_type": "raw",
        "reason": "x",
        "expect_id": named.format(next=base.id + 1),
    }


def carried(doc, form_id) -> str:
    return doc.by_id(form_id).one("input", name="expect_id").get("value")


@pytest.mark.parametrize("named", HOSTILE_IDS)
def test_a_crafted_link_cannot_set_the_forms_base(operator, db_path, named):
    base, link = crafted(db_path, named)
    doc = document(operator.get("/change", query_string=link))
    assert carried(doc, "change-form") == str(base.id)
    assert doc.by_id("change-form").one("input", name="reason").get("value") == "x"  # prefilled


@pytest.mark.parametrize("named", HOSTILE_IDS)
def test_the_confirmation_carries_the_change_read_at_review(operator, db_path, named):
    base, form = crafted(db_path, named)
    review = document(operator.post("/change", data=form))
    assert carried(review, "confirm-form") == str(base.id)
    assert (review.find(id="confirm-moved") is not None) == (named == "{next}")
    # Another operator changes the pipeline before Apply: a conflict, nothing written over it.
    theirs = set_by(db_path, "aggregated", who="carol")
    fields = {i.get("name"): i.get("value") for i in review.by_id("confirm-form").find_all("input")}
    conflict = document(operator.post("/change/apply", data=fields), 409).by_id("conflict")
    assert "carol" in conflict.text()
    with PipelineStore(db_path) as store:
        assert store.current() == theirs


@pytest.mark.parametrize("named", HOSTILE_IDS)
def test_a_crafted_revert_link_cannot_set_its_base(operator, db_path, named):
    first = set_by(db_path, "filtered")
    base = set_by(db_path, "aggregated")
    query = {"expect_id": named.format(next=base.id + 1)}
    review = document(operator.get(f"/revert/{first.id}", query_string=query))
    assert carried(review, "confirm-form") == str(base.id)


# -- a table made by another tool, with its own CHECK list (issue 15.16) -------------------------

OTHER_CHECK_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT NOT "
    "NULL CHECK(pipeline_type IN ('raw', 'schematized', 'aggregated', 'emergency', 'regional')), "
    "updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, metadata TEXT)"
)


@pytest.fixture
def other_check_db(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute(OTHER_CHECK_TABLE)
    conn.execute(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) VALUES "
        "('raw', '2026-11-26 09:00:00', 'x', '{}'), "
        "('aggregated', '2026-11-26 10:00:00', 'x', '{}')"
    )
    conn.commit()
    conn.close()
    return db_path


@pytest.mark.parametrize("path", ["/change", "/change/apply"])
def test_the_review_refuses_a_type_the_table_refuses_naming_those_it_accepts(
    operator, other_check_db, path
):
    before = other_check_db.read_bytes()
    form = {"pipeline_type": "filtered", "reason": "x", "expect_id": "2"}
    doc = document(operator.post(path, data=form), 422)
    error = doc.by_id("pipeline_type-error").text()
    assert "refuses filtered" in error and "accepts raw, schematized, aggregated." in error
    assert doc.find(id="confirm-form") is None
    assert other_check_db.read_bytes() == before
    # A type it accepts goes on to the confirmation as usual.
    form["pipeline_type"] = "schematized"
    assert document(operator.post("/change", data=form)).find(id="confirm-form") is not None


def test_a_revert_to_a_type_the_table_refuses_is_refused_at_review(operator, other_check_db):
    conn = sqlite3.connect(other_check_db)
    conn.execute("PRAGMA ignore_check_constraints = ON")  # its CHECK list changed since
    conn.execute("INSERT INTO pipeline_config (pipeline_type, updated_by) VALUES ('filtered', 'x')")
    conn.execute("PRAGMA ignore_check_constraints = OFF")
    conn.execute("INSERT INTO pipeline_config (pipeline_type, updated_by) VALUES ('raw', 'x')")
    conn.commit()
    conn.close()
    before = other_check_db.read_bytes()
    for response in (
        operator.get("/revert/3"),
        operator.post("/revert/3/apply", data={"expect_id": "4", "reason": "back"}),
    ):
        message = document(response, 422).by_id("panel-message").text()
        assert "refuses filtered" in message and "accepts raw, schematized, aggregated" in message
    assert other_check_db.read_bytes() == before
