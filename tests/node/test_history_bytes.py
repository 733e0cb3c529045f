"""The /history operator filter finds names stored as bytes that are not UTF-8 (issue 15.18):
the list offers them as their stored bytes, and choosing one finds exactly its rows."""

import sqlite3

import pytest
from htmldom import parse
from hypothesis import given
from hypothesis import strategies as st

from webapp.core.store import PipelineStore
from webapp.node.forms import operator_choice, stored_name


@pytest.fixture
def foreign_names(db_path):
    with PipelineStore(db_path, write_timeout=5) as store:
        store.set("filtered", updated_by="ops", reason="ours", source="cli")
    conn = sqlite3.connect(db_path)
    for stored in ("CAST(x'6f7073fffe' AS TEXT)", "CAST(x'6f7073fffd' AS TEXT)", "'hex:41'"):
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
            f"VALUES ('raw', '2026-11-27 10:00:00', {stored}, '{{}}')"
        )
    conn.commit()
    conn.close()
    return db_path


def listed(client, operator) -> list[int]:
    response = client.get("/history", query_string={"operator": operator})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    document = parse(response.get_data(as_text=True))
    return sorted(int(li.get("data-change-id")) for li in document.find_all("li", cls="change"))


def test_a_name_that_is_not_utf8_is_offered_and_found_by_its_bytes(web_app, foreign_names):
    client = web_app.test_client()
    document = parse(client.get("/history").get_data(as_text=True))
    options = {o.get("value"): o.text() for o in document.by_id("operators").find_all("option")}
    assert options["hex:6f7073fffe"] == "ops\ufffd\ufffd (stored bytes, not UTF-8)"
    assert options["hex:6f7073fffd"] == "ops\ufffd\ufffd (stored bytes, not UTF-8)"
    assert "ops" in options and "hex:41" in options  # valid names are offered as themselves
    for value, expected in [
        ("hex:6f7073fffe", [2]),
        ("hex:6f7073fffd", [3]),
        ("ops", [1]),
        ("hex:41", [4]),  # a name that looks like the form, stored as such: itself
        ("ops\ufffd\ufffd", []),  # what the broken name reads as is not its name
        ("hex:6f7073", []),  # valid UTF-8 ("ops") in hex form: a name like any other
        ("hex:zz", []),
        ("hex:6F7073FFFE", []),  # only the form the list offers (lowercase pairs)
        ("hex:6f 70 73 ff fe", []),
        ("hex:", []),
    ]:
        assert listed(client, value) == expected, value
    export = client.get("/history.csv", query_string={"operator": "hex:6f7073fffe"})
    assert export.status_code == 200 and len(export.get_data(as_text=True).splitlines()) == 2


@given(st.binary(min_size=1, max_size=60))
def test_every_stored_name_is_offered_as_what_finds_it(stored):
    value, label = operator_choice(stored)
    found = stored_name(value)
    try:
        assert found == stored.decode("utf-8") == value == label  # text: itself
    except UnicodeDecodeError:
        assert found == stored and value.startswith("hex:") and label.endswith("not UTF-8)")


@given(st.text(max_size=80) | st.binary(max_size=30).map(lambda b: "hex:" + b.hex().upper()))
def test_any_typed_filter_is_text_unless_it_names_bytes_that_are_not_utf8(text):
    found = stored_name(text)
    assert found == text or (isinstance(found, bytes) and text == "hex:" + found.hex())
