"""webapp/notify_state.py: the notifier's state file, atomic, locked, and kept for every webhook."""

import json
import os

import pytest

from webapp.core.errors import InvalidInput
from webapp.notify.state import NotifyState, default_path


def test_the_default_state_file_sits_beside_the_database(tmp_path):
    assert default_path(tmp_path / "sensor_data.db") == tmp_path / "pipeline-notify-state.json"


def test_a_missing_file_is_a_first_start_and_each_record_is_saved_at_once(tmp_path):
    path = tmp_path / "state.json"
    state = NotifyState.open(path)
    try:
        assert state.acknowledged("a" * 64) is None
        state.database = "/data/sensor_data.db"
        state.record("a" * 64, "https://hooks.example.org#aaaaaaaa", 7)
        on_disk = json.loads(path.read_text())
        assert on_disk["format"] == 1 and on_disk["database"] == "/data/sensor_data.db"
        assert on_disk["webhooks"]["a" * 64]["acknowledged_id"] == 7
        assert on_disk["webhooks"]["a" * 64]["webhook"] == "https://hooks.example.org#aaaaaaaa"
        # Written through a temporary file renamed into place: nothing else is left behind.
        assert sorted(os.listdir(tmp_path)) == ["state.json", "state.json.lock"]
    finally:
        state.close()
    again = NotifyState.open(path)
    try:
        assert again.acknowledged("a" * 64) == 7
        assert again.saved_database == "/data/sensor_data.db"
    finally:
        again.close()


def test_entries_of_webhooks_no_longer_configured_are_kept(tmp_path):
    path = tmp_path / "state.json"
    removed = {"webhook": "https://old.example#bbbbbbbb", "acknowledged_id": 3, "note": "kept"}
    path.write_text(json.dumps({"format": 1, "webhooks": {"b" * 64: removed}}))
    state = NotifyState.open(path)
    try:
        state.record("a" * 64, "https://new.example#aaaaaaaa", 9)
    finally:
        state.close()
    assert json.loads(path.read_text())["webhooks"]["b" * 64] == removed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        ("[]", "is not a notifier state of format 1"),
        ('{"format": 2, "webhooks": {}}', "is not a notifier state of format 1"),
        ('{"format": 1, "webhooks": {"k": {"acknowledged_id": -1}}}', "not a notifier state"),
        ('{"format": 1, "webhooks": {"k": {"acknowledged_id": "7"}}}', "not a notifier state"),
        ('{"format": 1, "webhooks": {"k": {"acknowledged_id": true}}}', "not a notifier state"),
        ('{"format": 1, "webhooks": {"k": 7}}', "not a notifier state"),
    ],
)
def test_a_corrupt_state_file_is_a_clear_error_and_stays_as_it_was(tmp_path, content, message):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(InvalidInput) as refused:
        NotifyState.open(path)
    assert message in str(refused.value)
    assert str(path) in str(refused.value)
    assert "move it away to start again at the newest change" in str(refused.value)
    assert path.read_text() == content
    NotifyState.open(path.with_name("other.json")).close()  # the lock was let go


def test_an_unreadable_state_file_is_a_clear_error(tmp_path):
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(InvalidInput, match=r"state file .* is a directory: name a regular file"):
        NotifyState.open(path)
    path.rmdir()
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput, match=r"cannot read the state file .*\(not UTF-8 text\)"):
        NotifyState.open(path)


def test_a_state_file_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match=r"cannot write the state file .*No such file"):
        NotifyState.open(tmp_path / "missing" / "state.json")


def test_one_notifier_per_state_file(tmp_path):
    path = tmp_path / "state.json"
    first = NotifyState.open(path)
    try:
        with pytest.raises(InvalidInput, match="another notifier is already running"):
            NotifyState.open(path)
    finally:
        first.close()
    NotifyState.open(path).close()


def test_a_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    state = NotifyState.open(path)
    try:
        state.record("a" * 64, "x", 1)
        before = path.read_text()

        def full_disk(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
        with pytest.raises(OSError, match="No space left"):
            state.record("a" * 64, "x", 2)
    finally:
        state.close()
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["state.json", "state.json.lock"]
