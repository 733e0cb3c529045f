"""The SQLite adapter (webapp/database.py): a long-lived store follows the file at its path.

Operators restore backups by renaming or copying a file into place; disks fill; files get
truncated. A store that stays open (a server worker, ``monitor``) must notice at its next use
and describe the file that is at the path now.
"""

import os
import re
import shutil

import pytest
from conftest import checkpoint, database_with

from webapp.core import events
from webapp.core.errors import DatabaseUnusable
from webapp.core.store import PipelineStore


@pytest.fixture
def live(db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops", reason="live")
        store.set("aggregated", updated_by="ops", reason="live")
        yield store


def test_a_backup_renamed_into_place_is_read_at_the_next_use(live, db_path, tmp_path):
    assert live.current().id == 2
    generation = live.generation
    backup = database_with(tmp_path / "backup.db", "schematized")
    checkpoint(db_path)
    os.replace(backup, db_path)
    current = live.current()
    assert (current.id, current.pipeline_type) == (1, "schematized")
    assert live.generation == generation + 1


def test_a_file_copied_over_in_place_is_read_at_the_next_use(live, db_path, tmp_path):
    backup = database_with(tmp_path / "backup.db", "raw", "schematized", "filtered")
    checkpoint(db_path)
    inode = db_path.stat().st_ino
    shutil.copyfile(backup, db_path)  # same inode, new content
    assert db_path.stat().st_ino == inode
    current = live.current()
    assert (current.id, current.pipeline_type) == (3, "filtered")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda path: path.write_bytes(b""), "not an SQLite database (the file is empty)"),
        (lambda path: path.write_bytes(b"backup failed: disk full\n" * 400), "not an SQLite"),
        (lambda path: path.unlink(), "database not found"),
    ],
    ids=["truncated", "garbage", "removed"],
)
def test_a_damaged_file_is_reported_at_once_then_recovered(
    live, db_path, tmp_path, damage, fragment
):
    good = database_with(tmp_path / "good.db", "raw")
    checkpoint(db_path)
    retries = events.STATS["write_retries"]
    damage(db_path)
    for read in (live.current, live.history, lambda: live.set("raw", updated_by="x", reason="r")):
        with pytest.raises(DatabaseUnusable, match=re.escape(fragment)):
            read()
    assert events.STATS["write_retries"] == retries  # reported at once: never waited as "busy"
    assert not db_path.exists() or db_path.stat().st_size < 100_000  # nothing was written
    os.replace(good, db_path)
    assert live.current().pipeline_type == "raw"  # good content back: served at the next use


def test_an_unchanged_file_keeps_its_connection(live):
    connection = live.db.connection()
    for _ in range(5):
        live.current()
    assert live.db.connection() is connection
