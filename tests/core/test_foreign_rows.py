"""Rows and tables other tools made: nothing they hold may break a reader, on any path.

The table is shared: C, Go or shell tools may write anything SQLite allows. These tests write
such rows with plain ``sqlite3`` and read them through the CLI (both entrances), the JSON API,
the exports and the uploader function.
"""

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weblib import basic

from webapp.core.errors import DatabaseUnusable, InvalidInput, UnknownPipelineType
from webapp.core.store import PipelineStore
from webapp.uploader import active_pipeline, connect_uploader

# Our columns, without the seed's CHECK or NOT NULL: what another tool may have created.
LOOSE_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT, "
    "updated_at TIMESTAMP, updated_by TEXT, metadata TEXT)"
)
# The seed tool's first version: our columns, another CHECK list.
FIRST_VERSION_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT NOT "
    "NULL CHECK(pipeline_type IN ('raw', 'schematized', 'aggregated', 'emergency', 'regional')), "
    "updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, metadata TEXT)"
)
DEEP = "[" * 100_000 + "]" * 100_000
csv.field_size_limit(1 << 24)  # the deep metadata is one 200 kB cell
# (pipeline_type, updated_at, updated_by, metadata) as SQL expressions: bytes that are not
# UTF-8 need CAST(x'..' AS TEXT), which no Python parameter can express.
HOSTILE_ROWS = [
    ("'filtered'", "'2026-11-20 08:00:00'", "'alice'", '\'{"reason": "=cmd|calc"}\''),
    ("'raw'", "'yesterday'", "CAST(x'ff41' AS TEXT)", "'not json'"),
    ("NULL", "NULL", "NULL", "'{\"reason\": NaN}'"),
    ("'aggregated'", "1764237600", "'\x1b[2J\x1b[31mred'", f"'{DEEP}'"),
    ("CAST(x'c3' AS TEXT)", "'2099-01-01 00:00:00'", "'two\nlines'", "CAST(x'fffe' AS TEXT)"),
    ("'schematized'", "'2026-11-27T10:00:00Z'", "'abc\u202edcba'", '\'{"reason": "\\ud800"}\''),
    ("'emergency'", "'2026-11-27 10:00:00'", "'-1+1'", '\'{"reason": "@SUM(A1)\\r"}\''),
]


def write_rows(path, table_sql, rows):
    conn = sqlite3.connect(path)
    conn.execute(table_sql)
    for row in rows:
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
            f"VALUES ({', '.join(row)})"
        )
    conn.commit()
    conn.close()


@pytest.fixture
def hostile_db(db_path):
    write_rows(db_path, LOOSE_TABLE, HOSTILE_ROWS)
    return db_path


def strict_json(text):
    def refuse(constant):
        raise AssertionError(f"{constant} is not RFC 8259 JSON")

    return json.loads(text, parse_constant=refuse)


def assert_terminal_safe(text):
    from webapp.core.text import forbidden

    for line in text.split("\n"):
        assert not any(forbidden(char) for char in line), line


# -- the command line ----------------------------------------------------------------------------


def test_get_shows_an_unmanaged_current_type_as_such(cli, hostile_db):
    result = cli("get")
    assert result.exit_code == 0, result.output
    assert "pipeline: 'emergency' (not a type this tool manages)" in result.stdout
    assert "bucket:   (none)" in result.stdout
    assert_terminal_safe(result.stdout)
    record = strict_json(cli("get", "--json").stdout)
    assert (record["pipeline_type"], record["bucket"], record["managed"]) == (
        "emergency",
        None,
        False,
    )


@pytest.mark.parametrize("output", ["table", "json", "csv"])
def test_history_reads_every_hostile_row_in_every_format(cli, hostile_db, output):
    result = cli("history", "--all", "--format", output)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if output == "json":
        records = strict_json(result.stdout)
        assert [r["id"] for r in records] == list(range(len(HOSTILE_ROWS), 0, -1))
        by_id = {r["id"]: r for r in records}
        assert by_id[2]["updated_by"] == "\ufffdA"  # bytes that are not UTF-8: replaced
        assert by_id[2]["updated_at"] == "yesterday"  # kept as stored
        assert by_id[3]["metadata"] == {"unparsed": '{"reason": NaN}'}
        assert by_id[4]["metadata"] == {"unparsed": DEEP}
        assert by_id[5]["updated_at"] == "2099-01-01T00:00:00.000Z"
    elif output == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert len(rows) == len(HOSTILE_ROWS)
        by_id = {row["id"]: row for row in rows}
        assert by_id["1"]["reason"] == "'=cmd|calc"  # a formula is neutralised
        assert by_id["7"]["updated_by"] == "'-1+1"
        assert by_id["7"]["reason"] == "'@SUM(A1)\r"
    else:
        assert_terminal_safe(result.stdout)
        assert "\\x1b[2J" in result.stdout and "two\\x0alines" in result.stdout
        assert len(result.stdout.splitlines()) == 1 + len(HOSTILE_ROWS)  # no fake line


def test_monitor_prints_a_hostile_row_safely(cli, hostile_db, monkeypatch):
    from webapp.core import watch

    calls = []

    def sleep(seconds):  # another tool writes a row during the first wait
        calls.append(seconds)
        if len(calls) == 1:
            write_rows(hostile_db, "SELECT 1", [("'regional'", "'x'", "'\x1b]0;title\x07'", "'['")])

    monkeypatch.setattr(watch.time, "sleep", sleep)
    result = cli("monitor", "--count", "1", "--interval", "0.05")
    assert result.exit_code == 0, result.output
    assert_terminal_safe(result.stdout)
    assert "'regional' (not a type this tool manages)" in result.stdout
    assert "\\x1b]0;title\\x07" in result.stdout


# -- the uploader ---------------------------------------------------------------------------------


def test_the_uploader_holds_its_batch_on_an_unmanaged_type(hostile_db):
    conn = connect_uploader(hostile_db)
    with pytest.raises(UnknownPipelineType) as caught:
        active_pipeline(conn)
    assert caught.value.value == "emergency" and "'emergency'" in str(caught.value)
    conn.execute("UPDATE pipeline_config SET pipeline_type = CAST(x'ff' AS TEXT) WHERE id = 7")
    with pytest.raises(UnknownPipelineType):
        active_pipeline(conn)
    conn.execute("UPDATE pipeline_config SET pipeline_type = NULL WHERE id = 7")
    with pytest.raises(UnknownPipelineType):
        active_pipeline(conn)
    conn.close()


def test_the_uploader_refuses_a_table_of_the_later_shape(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY, pipeline_type TEXT, "
        "created_at TIMESTAMP, created_by TEXT, is_active BOOLEAN)"
    )
    conn.execute("INSERT INTO pipeline_config (pipeline_type, is_active) VALUES ('raw', 1)")
    conn.commit()
    conn.close()
    conn = connect_uploader(db_path)
    with pytest.raises(DatabaseUnusable, match="has another tool.s columns"):
        active_pipeline(conn)
    conn.close()


# -- the web --------------------------------------------------------------------------------------


def test_api_answers_strict_json_for_hostile_rows(web_app, hostile_db):
    client = web_app.test_client()
    response = client.get("/api/pipeline")
    assert response.status_code == 200
    assert strict_json(response.get_data(as_text=True))["managed"] is False
    response = client.get("/api/history?limit=500")
    assert response.status_code == 200
    assert len(strict_json(response.get_data(as_text=True))["changes"]) == len(HOSTILE_ROWS)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_stream_every_hostile_row(web_app, hostile_db, fmt):
    response = web_app.test_client().get(f"/history.{fmt}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    if fmt == "json":
        assert len(strict_json(body)) == len(HOSTILE_ROWS)
    else:
        rows = list(csv.DictReader(io.StringIO(body)))
        assert rows[-1]["reason"] == "'=cmd|calc"


# -- a table with another CHECK list --------------------------------------------------------------


@pytest.fixture
def first_version_db(db_path):
    write_rows(
        db_path, FIRST_VERSION_TABLE, [("'emergency'", "'2026-11-26 10:00:00'", "'x'", "''")]
    )
    return db_path


def test_a_type_the_tables_check_refuses_is_refused_up_front(first_version_db):
    before = first_version_db.read_bytes()
    with PipelineStore(first_version_db) as store:
        assert store.current().type_label == "'emergency' (not a type this tool manages)"
        with pytest.raises(InvalidInput) as caught:
            store.set("filtered", updated_by="ops", reason="r")
    # Issue 16.4: the types that can be set, and the CHECK's others named as not managed.
    assert str(caught.value) == (
        "pipeline type 'filtered' is refused by this database's pipeline_config table: the types "
        "that can be set here are raw, schematized, aggregated (it also lists 'emergency', "
        "'regional': not types this tool manages)"
    )
    assert first_version_db.read_bytes() == before
    with PipelineStore(first_version_db) as store:
        assert store.set("aggregated", updated_by="ops", reason="r").change.previous == "emergency"


def test_the_cli_and_api_refuse_such_a_type_with_their_statuses(cli, first_version_db, web_app):
    result = cli("set", "filtered", "--reason", "r")
    fragment = "can be set here are raw, schematized, aggregated (it also lists 'emergency'"
    assert result.exit_code == 2 and fragment in result.stderr
    response = web_app.test_client().post(
        "/api/pipeline", json={"pipeline_type": "filtered", "reason": "r"}, headers=basic()
    )
    assert response.status_code == 400 and fragment in response.get_json()["error"]


# -- readers that order by time ----------------------------------------------------------------


def newest_by_time(path):
    conn = sqlite3.connect(path)
    try:
        query = "SELECT id FROM pipeline_config ORDER BY updated_at DESC LIMIT 1"
        return conn.execute(query).fetchall()[0][0]
    finally:
        conn.close()


def test_newest_by_time_is_newest_by_id_for_quick_changes(store, db_path):
    for n, pipeline_type in enumerate(["filtered", "aggregated", "raw", "schematized"] * 5):
        change = store.set(pipeline_type, updated_by="ops", reason=str(n)).change
        assert newest_by_time(db_path) == change.id  # the seed README's query agrees


def test_a_row_from_the_future_moves_our_stamp_after_it_and_records_the_clock(store, db_path):
    store.set("filtered", updated_by="ops")
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by) "
        "VALUES ('raw', '2099-01-01 00:00:00', 'clock-skewed-tool')"
    )
    conn.commit()
    conn.close()
    change = store.set("aggregated", updated_by="ops", reason="after").change
    assert change.updated_at_text == "2099-01-01 00:00:00.001"
    clock = datetime.fromisoformat(change.metadata["clock"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - clock).total_seconds() < 60
    assert newest_by_time(db_path) == change.id


# -- anything SQLite allows -----------------------------------------------------------------------


class AsText(bytes):
    """Bytes stored as TEXT (CAST), as a C tool writing raw bytes into a TEXT column leaves."""


VALUES = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.binary(max_size=12),
    st.binary(max_size=12).map(AsText),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(VALUES, VALUES, VALUES, VALUES), min_size=1, max_size=5))
def test_any_row_reads_as_strict_json_and_safe_text(tmp_path_factory, rows):
    from webapp.cli.support import describe

    path = tmp_path_factory.mktemp("any") / "any.db"
    conn = sqlite3.connect(path)
    conn.execute(LOOSE_TABLE)
    for row in rows:
        slots = ", ".join("CAST(? AS TEXT)" if isinstance(v, AsText) else "?" for v in row)
        params = [bytes(value) if isinstance(value, bytes) else value for value in row]
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
            f"VALUES ({slots})",
            params,
        )
    conn.commit()
    conn.close()
    with PipelineStore(path) as store:
        changes = store.history(100)
        assert len(changes) == len(rows)
        for change in [store.current(), *changes]:
            json.dumps(change.to_dict(), allow_nan=False, ensure_ascii=False).encode("utf-8")
            assert_terminal_safe(describe(change))


def test_operator_names_of_any_kind_are_listed_once(db_path):
    write_rows(
        db_path,
        LOOSE_TABLE,
        [
            ("'raw'", "'x'", "CAST(x'ff' AS TEXT)", "NULL"),
            ("'raw'", "'x'", "x'ff'", "NULL"),  # a blob
            ("'raw'", "'x'", "42", "NULL"),  # a number: TEXT affinity stores '42'
            ("'raw'", "'x'", "'alice'", "NULL"),
            ("'raw'", "'x'", "CAST(x'ff' AS TEXT)", "NULL"),
        ],
    )
    with PipelineStore(db_path) as store:
        store.initialize()
        assert store.operators() == ["42", "alice", "\ufffd"]


def test_a_change_is_written_after_rows_whose_time_is_not_utf8(db_path):
    write_rows(
        db_path,
        LOOSE_TABLE,
        [("'raw'", "CAST(x'32303939ff' AS TEXT)", "CAST(x'ff' AS TEXT)", "CAST(x'ff' AS TEXT)")],
    )
    with PipelineStore(db_path) as store:
        result = store.set("filtered", updated_by="ops", reason="after odd bytes")
    assert result.changed and result.change.previous == "raw"
    assert abs(datetime.now(UTC) - result.change.updated_at).total_seconds() < 60
