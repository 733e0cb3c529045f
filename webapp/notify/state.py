"""The notifier's state file: how far each webhook got, so a restart resumes and skips nothing.

One JSON object, rewritten whole after each acknowledged change (temp file, fsync, rename, fsync
of the folder: a crash leaves the old file or the new one, never half of one). Webhooks are keyed
by a hash of their URL, so the file holds no token; entries of webhooks no longer configured are
kept as they are. A ``.lock`` file beside it keeps a second notifier off the same state. No Flask.
"""

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from webapp.core.errors import InvalidInput
from webapp.core.files import check_replaceable
from webapp.core.text import terminal_safe
from webapp.core.timefmt import iso

FORMAT = 1
FILE_NAME = "pipeline-notify-state.json"  # default: beside the database
_START_AGAIN = "fix it, or move it away to start again at the newest change"


def default_path(db_path) -> Path:
    return Path(os.path.abspath(db_path)).parent / FILE_NAME


class NotifyState:
    """Each webhook's last acknowledged change id, held in one file by one process."""

    def __init__(self, path):
        self.path = Path(path)
        self.database = None  # the database's absolute path, written for people to read
        self._entries = {}
        self._lock = threading.Lock()  # delivery threads record concurrently
        self._lock_file = None
        self.saved_database = None

    @classmethod
    def open(cls, path) -> "NotifyState":
        """Take the state file for this process (refused if another notifier holds it); load it."""
        check_replaceable(path, "state file")  # before its lock file is made beside it
        state = cls(path)
        state._take()
        try:
            state._load()
        except BaseException:
            state.close()
            raise
        return state

    def _take(self) -> None:
        shown = terminal_safe(self.path)
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            handle = open(lock_path, "a")  # noqa: SIM115 (held open until close())
        except OSError as error:
            raise InvalidInput(f"cannot write the state file {shown} ({error.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InvalidInput(
                f"another notifier is already running with the state file {shown} "
                "(one notifier per database and state file)"
            ) from None
        self._lock_file = handle

    def _load(self) -> None:
        shown = terminal_safe(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return  # a first start
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise InvalidInput(f"cannot read the state file {shown} ({reason})") from None
        try:
            document = json.loads(text)
        except ValueError as error:
            raise InvalidInput(
                f"the state file {shown} is not valid JSON ({error}); {_START_AGAIN}"
            ) from None
        except RecursionError:  # nesting deeper than the decoder recurses: no state of ours
            document = None
        webhooks = document.get("webhooks") if isinstance(document, dict) else None
        if (
            not isinstance(webhooks, dict)
            or document.get("format") != FORMAT
            or not all(_valid_entry(entry) for entry in webhooks.values())
        ):
            raise InvalidInput(
                f"the state file {shown} is not a notifier state of format {FORMAT} "
                f'({{"format": 1, "webhooks": {{...: {{"acknowledged_id": N}}}}}}); {_START_AGAIN}'
            )
        self._entries = webhooks
        self.saved_database = document.get("database")

    def acknowledged(self, key: str) -> int | None:
        """Return the last change id acknowledged by webhook ``key``, or None if never seen."""
        entry = self._entries.get(key)
        return None if entry is None else entry["acknowledged_id"]

    def entry(self, key: str) -> dict:
        """Return what is saved for target ``key`` (empty if never seen)."""
        return dict(self._entries.get(key) or {})

    def record(self, key: str, label: str, change_id: int, **extra) -> None:
        """Remember that target ``key`` is done up to ``change_id`` (with ``extra``, such as the
        fleet report's ``seq``); save at once (OSError)."""
        with self._lock:
            self._entries[key] = {
                "webhook": label,
                "acknowledged_id": change_id,
                "updated_at": iso(datetime.now(UTC)),
                **extra,
            }
            self._save()

    def _save(self) -> None:
        document = {"format": FORMAT, "database": self.database, "webhooks": self._entries}
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        folder = self.path.parent
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)  # not secret: hashes and ids (mkstemp made it 0600)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        # The rename itself is durable once the folder's entry is on disk.
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock; the file stays (removing it would race)
            self._lock_file = None


def _valid_entry(entry) -> bool:
    if not isinstance(entry, dict):
        return False
    return all(
        _whole(entry.get(name)) for name in ("acknowledged_id", "seq") if name in entry
    ) and ("acknowledged_id" in entry)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
