"""One text rule and one integer parser at every web entrance (issue 15.8, 15.10).

A reason that starts or ends with a refused character is refused (not stripped and written) by
the form and the API; URL-encoded bodies and query strings that are not UTF-8 once decoded, or
hold a malformed escape, are a 400; digits of other scripts are no numbers anywhere.
"""

import sqlite3
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weblib import basic, csrf_from

from webapp.core.errors import InvalidInput
from webapp.core.text import whole_number

EDGE_REASONS = ["\nwhy", "why\n", "why\r\n", "\twhy", "why\x1c", "\x85why", "why\u2028"]
FORM = "application/x-www-form-urlencoded"


def row_count(db_path) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT count(*) FROM pipeline_config").fetchone()[0]
    except sqlite3.OperationalError:  # no table yet: nothing was ever written
        return 0
    finally:
        conn.close()


@pytest.fixture
def token(operator):
    return csrf_from(operator.get("/").get_data(as_text=True))


@pytest.mark.parametrize("reason", EDGE_REASONS)
def test_the_form_refuses_a_reason_with_a_refused_character_at_an_end(
    operator, token, db_path, reason
):
    form = {"csrf_token": token, "pipeline_type": "filtered", "reason": reason, "expect_id": "0"}
    for path in ("/change", "/change/apply"):
        response = operator.post(path, data=form)
        assert response.status_code == 422, (path, response.status_code)
        assert "must be one line of plain text" in response.get_data(as_text=True)
    assert row_count(db_path) == 0


@pytest.mark.parametrize("reason", EDGE_REASONS)
def test_the_api_refuses_a_reason_with_a_refused_character_at_an_end(operator, db_path, reason):
    body = {"pipeline_type": "filtered", "reason": reason}
    response = operator.post("/api/pipeline", json=body, headers=basic())
    assert response.status_code == 400
    assert "must be one line of plain text" in response.get_json()["error"]
    assert row_count(db_path) == 0


@pytest.mark.parametrize(
    ("encoded", "fragment"),
    [
        ("a%FFb", "not valid UTF-8"),
        ("a%ED%A0%80b", "not valid UTF-8"),  # an encoded surrogate
        ("a%C0%AFb", "not valid UTF-8"),  # an overlong "/"
        ("a%G1b", "malformed percent escape"),
        ("ab%", "malformed percent escape"),
        ("a%2", "malformed percent escape"),
    ],
)
def test_a_form_body_that_is_not_utf8_once_decoded_is_a_400(
    operator, token, db_path, encoded, fragment
):
    body = f"csrf_token={token}&pipeline_type=filtered&expect_id=0&reason={encoded}"
    for path in ("/change", "/change/apply"):
        response = operator.post(path, data=body.encode(), content_type=FORM)
        assert response.status_code == 400, (path, response.status_code)
        assert fragment in response.get_data(as_text=True)
    raw = f"csrf_token={token}&pipeline_type=filtered&expect_id=0&reason=a".encode() + b"\xff"
    assert operator.post("/change/apply", data=raw, content_type=FORM).status_code == 400
    assert row_count(db_path) == 0


def test_a_multipart_form_with_bytes_that_are_not_utf8_is_a_400(operator, token, db_path):
    fields = {"csrf_token": token, "pipeline_type": "filtered", "expect_id": "0"}
    parts = b"".join(
        b'--XX\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name.encode(), value)
        for name, value in [*((k, v.encode()) for k, v in fields.items()), ("reason", b"a\xffb")]
    )
    response = operator.post(
        "/change/apply", data=parts + b"--XX--\r\n", content_type="multipart/form-data; boundary=XX"
    )
    assert response.status_code == 400 and "not UTF-8" in response.get_data(as_text=True)
    assert row_count(db_path) == 0


def test_a_well_encoded_form_body_is_written_as_typed(operator, token, db_path):
    reason = urllib.parse.quote("café – ✓ 100%")
    body = f"csrf_token={token}&pipeline_type=filtered&expect_id=0&reason={reason}"
    response = operator.post("/change/apply", data=body.encode(), content_type=FORM)
    assert response.status_code == 302
    assert operator.get("/api/pipeline").get_json()["metadata"]["reason"] == "café – ✓ 100%"


@pytest.mark.parametrize("query", ["since=%FF", "since=%G1", "next=%ED%A0%80"])
def test_a_query_string_that_is_not_utf8_is_a_400(operator, query):
    assert operator.get(f"/poll?{query}").status_code == 400
    response = operator.get(f"/api/history?{query}")
    assert response.status_code == 400 and "query string" in response.get_json()["error"]


OTHER_DIGITS = ["١٧", "１７", "٣", "²", "1_0", "+3", " 3", "3 ", "-0", "0x1", "1e3", "٣٣٣٣٣"]


@pytest.mark.parametrize("text", OTHER_DIGITS)
def test_digits_of_other_scripts_are_refused_at_every_web_entrance(operator, token, store, text):
    store.set("raw", updated_by="ops", reason="first")
    quoted = urllib.parse.quote(text)
    assert operator.get(f"/poll?since={quoted}").status_code == 400
    assert operator.get(f"/revert/1?expect_id={quoted}").status_code == 400
    assert operator.get(f"/revert/{quoted}").status_code == 404
    assert operator.get(f"/api/history?limit={quoted}").status_code == 400
    assert operator.get(f"/api/history?before={quoted}").status_code == 400
    answer = operator.post(
        "/api/pipeline",
        json={"pipeline_type": "filtered", "reason": "r"},
        headers={**basic(), "If-Match": f'"{text}"'},
    )
    assert answer.status_code == 400
    form = {"csrf_token": token, "pipeline_type": "filtered", "reason": "r", "expect_id": text}
    assert operator.post("/change/apply", data=form).status_code == 422
    history = operator.get(f"/history?before={quoted}")
    assert history.status_code < 500
    assert store.current().id == 1  # nothing written


def test_the_same_numbers_in_ascii_are_taken(operator, store):
    store.set("raw", updated_by="ops", reason="first")
    store.set("filtered", updated_by="ops", reason="second")
    assert operator.get("/poll?since=2").status_code == 204
    assert operator.get("/revert/1?expect_id=2").status_code == 200


@given(st.text(st.characters(categories=["Nd"]), min_size=1, max_size=8))
def test_whole_number_takes_ascii_digits_only(text):
    if text.isascii():
        assert whole_number(text, "n") == int(text)
    else:
        with pytest.raises(InvalidInput, match="n must be a whole number"):
            whole_number(text, "n")


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=4).filter(
        lambda t: not t.isascii()
    )
)
def test_any_other_scripts_digits_are_refused_by_poll_and_the_api(operator, text):
    quoted = urllib.parse.quote(text)
    assert operator.get(f"/poll?since={quoted}").status_code == 400
    assert operator.get(f"/api/history?limit={quoted}").status_code == 400
