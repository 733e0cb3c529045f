"""One shape rule for every reader: ``get`` (both entrances), the store and the uploader function
show the same pipeline or refuse alike, on every table the original tool ever made (issue 16.3),
and a held lock is busy for the uploader, not unusable (issue 15.15)."""

import json
import sqlite3

import pytest
from original_shapes import history_rows, make_shape, stamp
from workers import LockHolder

from webapp.core import schema
from webapp.core.errors import DatabaseBusy, ForeignTable, PipelineError, UnknownPipelineType
from webapp.core.store import PipelineStore
from webapp.uploader import active_pipeline, connect_uploader

# shape -> rows; every case below is a real table of that shape in a sensor database
CASES = {
    "no-table": (None, []),
    "seed-empty": ("seed", []),
    "seed": ("seed", [("schematized", stamp(0), "a"), ("aggregated", stamp(1), "b")]),
    "seed-first-check": ("seed-first-check", [("aggregated", stamp(0), "a")]),
    "seed-first-check-emergency": ("seed-first-check", [("emergency", stamp(0), "a")]),
    "single-row-active": ("single-row", [("filtered", stamp(0), "a", '{"window": 60}', 1)]),
    "single-row-inactive": ("single-row", [("aggregated", stamp(0), "a", "{}", 0)]),
    "is-active": ("is-active", history_rows("raw", "aggregated", "filtered", active=1)),
    "extra-column": ("extra-column", [("filtered", stamp(0), "a")]),
}


def build(db_path, case):
    shape, rows = CASES[case]
    if shape is not None:
        make_shape(db_path, shape, rows)
    return db_path


def uploader_answer(db_path):
    """What the uploader function says: the type, or the error it raises."""
    conn = connect_uploader(db_path)
    try:
        return ("ok", active_pipeline(conn).pipeline_type)
    except PipelineError as error:
        return (type(error).__name__, error.exit_code)
    finally:
        conn.close()


def get_answer(cli):
    """What ``get --json`` says: the type, or the error class it exits with."""
    result = cli("get", "--json")
    if result.exit_code == 0:
        record = json.loads(result.output)
        return ("ok", record["pipeline_type"]), record
    return ("error", result.exit_code), result.output


@pytest.mark.parametrize("case", sorted(CASES))
def test_get_and_the_uploader_agree_on_every_shape(case, cli, db_path):
    build(db_path, case)
    (kind, value), record = get_answer(cli)
    answer = uploader_answer(db_path)
    if kind == "ok" and record["managed"]:
        assert answer == ("ok", value)
    elif kind == "ok":  # a type this tool does not manage: shown by get, held by the uploader
        assert answer == ("UnknownPipelineType", UnknownPipelineType.exit_code)
    else:
        assert answer == ("ForeignTable", value), (answer, record)
        assert "another tool's columns" in record


EXPECTED = {
    "no-table": "raw",
    "seed-empty": "raw",
    "seed": "aggregated",
    "seed-first-check": "aggregated",
    "seed-first-check-emergency": UnknownPipelineType,
    "single-row-active": ForeignTable,
    "single-row-inactive": ForeignTable,  # never its type: the original says none is active
    "is-active": ForeignTable,
    "extra-column": ForeignTable,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_shape_reads_as_documented(case, db_path):
    build(db_path, case)
    expected = EXPECTED[case]
    conn = connect_uploader(db_path)
    if isinstance(expected, str):
        assert active_pipeline(conn).pipeline_type == expected
        with PipelineStore(db_path) as store:
            assert store.current().pipeline_type == expected
    else:
        with pytest.raises(expected):
            active_pipeline(conn)
    conn.close()


@pytest.mark.parametrize("case", ["single-row-active", "is-active", "extra-column"])
def test_a_refusal_names_the_columns_and_for_the_originals_the_migration(case, db_path):
    build(db_path, case)
    conn = connect_uploader(db_path)
    with pytest.raises(ForeignTable) as caught:
        active_pipeline(conn)
    conn.close()
    message = str(caught.value)
    assert str(db_path) in message and "nothing was read or written" in message
    columns = ", ".join(SHAPES_COLUMNS[case])
    assert f"has another tool's columns ({columns})" in message
    assert ("migrate" in message) == (case != "extra-column")


SHAPES_COLUMNS = {
    "single-row-active": (
        "id",
        "pipeline_type",
        "updated_at",
        "updated_by",
        "config_json",
        "is_active",
    ),
    "is-active": ("id", "pipeline_type", "created_at", "created_by", "is_active"),
    "extra-column": (*schema.COLUMNS, "note"),
}


def test_a_null_type_in_the_newest_row_is_held_not_the_default(db_path):
    conn = sqlite3.connect(db_path)  # our columns, no NOT NULL: another tool's variant
    conn.execute(schema.SCHEMA.replace("TEXT NOT NULL CHECK", "TEXT CHECK"))
    conn.execute("INSERT INTO pipeline_config (pipeline_type, updated_at) VALUES (NULL, 'x')")
    conn.commit()
    conn.close()
    conn = connect_uploader(db_path)
    with pytest.raises(UnknownPipelineType) as caught:
        active_pipeline(conn)
    assert caught.value.value is None
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exclusive", "wal"])
def test_a_held_lock_is_busy_for_the_uploader_never_unusable(mode, db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops", reason="r")
    if mode == "exclusive":  # a rollback-journal file, as the sensor writer may leave it
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
    with LockHolder(db_path, mode) as holder:
        if mode == "exclusive":
            with pytest.raises(DatabaseBusy, match="busy"):
                connect_uploader(db_path, timeout=0.1)
            holder.release()
            conn = connect_uploader(db_path, timeout=0.1)
        else:  # WAL readers are not blocked by a writer: the read still answers
            conn = connect_uploader(db_path, timeout=0.1)
            assert active_pipeline(conn).pipeline_type == "filtered"
            holder.release()
    assert active_pipeline(conn).pipeline_type == "filtered"
    conn.close()


@pytest.mark.slow
def test_a_lock_taken_after_connecting_is_busy_for_active_pipeline(db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops", reason="r")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    reader = connect_uploader(db_path, timeout=0.1)
    with LockHolder(db_path, "exclusive") as holder:
        with pytest.raises(DatabaseBusy):
            active_pipeline(reader)
        holder.release()
    assert active_pipeline(reader).pipeline_type == "filtered"
    reader.close()


@pytest.mark.parametrize("opener", ["connect_uploader", "plain"])
def test_a_table_replaced_under_an_open_connection_is_checked_again(opener, db_path):
    with PipelineStore(db_path) as store:
        store.set("aggregated", updated_by="ops", reason="r")
    conn = connect_uploader(db_path) if opener == "connect_uploader" else sqlite3.connect(db_path)
    assert active_pipeline(conn).pipeline_type == "aggregated"
    other = sqlite3.connect(db_path)
    other.execute("DROP TABLE pipeline_config")
    other.commit()
    other.close()
    make_shape(db_path, "single-row", [("aggregated", stamp(0), "a", "{}", 0)])
    with pytest.raises(ForeignTable):
        active_pipeline(conn)
    conn.close()


@pytest.mark.parametrize("case", ["single-row-inactive", "is-active", "extra-column", "emergency"])
def test_the_readme_uploader_snippet_holds_the_batch_on_every_refusal(case, db_path, capsys):
    """README "For uploader authors": the block runs as printed and returns None (hold)."""
    from test_readme import README, python_blocks

    if case == "emergency":
        make_shape(db_path, "seed-first-check", [("emergency", stamp(0), "a")])
    else:
        build(db_path, case)
    (block,) = [code for code in python_blocks(README) if "def batch_target" in code]
    namespace = {"__name__": "readme"}
    exec(compile(block.replace("/data/sensor_data.db", str(db_path)), "README", "exec"), namespace)
    assert namespace["target"] is None
    assert capsys.readouterr().out.startswith("holding the batch: ")
    namespace["conn"] and namespace["conn"].close()


@pytest.mark.slow
def test_the_readme_uploader_snippet_holds_the_batch_while_a_lock_is_held(db_path, capsys):
    from test_readme import README, python_blocks

    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    (block,) = [code for code in python_blocks(README) if "def batch_target" in code]
    code = block.replace("/data/sensor_data.db", str(db_path))
    code = code.replace("connect_uploader(DATABASE)", "connect_uploader(DATABASE, timeout=0.1)")
    with LockHolder(db_path, "exclusive"):
        namespace = {"__name__": "readme"}
        exec(compile(code, "README", "exec"), namespace)
    assert namespace["target"] is None
    assert "holding the batch: database is busy" in capsys.readouterr().out
