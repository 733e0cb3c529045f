"""Server-side sign-in sessions: one small file per session in a directory all workers share.

The session cookie carries only a random session id (inside Flask's signed cookie); the record
here is what makes it a sign-in. Logging out deletes the record, so a cookie captured before is
worth nothing after it, whichever worker it reaches, and after a restart too. No Flask here.

A record is a file named ``<operator digest>.<id digest>``: digests, so that reading the
directory gives no usable id. It holds the operator, the start time and a fingerprint of the
account's password hash. Its modification time is the last activity: ``os.utime`` cannot bring
back a file that another worker has just deleted, so a logout always wins over a request in
flight. Expired records are pruned at each sign-in, and the number of records is capped.
"""

import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from webapp.core.errors import PipelineError

MAX_SESSIONS = 1000  # live records in all; the least recently active go first
MAX_PER_OPERATOR = 20  # one operator's browsers and devices; their least recently active go first
MAX_RECORD_BYTES = 4096
RECORD_NAME = re.compile(r"[0-9a-f]{16}\.[0-9a-f]{64}\Z")  # what _path() names a record


class SessionsUnavailable(PipelineError):
    """Sessions cannot be recorded (the state directory is not writable): nobody can sign in."""

    http_status = 503


@dataclass(frozen=True)
class Session:
    """A live sign-in."""

    operator: str
    fingerprint: str  # of the password hash at sign-in: a new password ends the session
    started: float  # wall-clock seconds
    seen: float  # last activity


def digest(text: str, length: int = 64) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


class SessionStore:
    """Create, look up, touch and end sessions in ``directory``."""

    def __init__(
        self,
        directory,
        idle_seconds: float,
        lifetime_seconds: float,
        clock=time.time,
        max_sessions: int = MAX_SESSIONS,
        max_per_operator: int = MAX_PER_OPERATOR,
    ):
        self.directory = Path(directory)
        self.idle = idle_seconds
        self.lifetime = lifetime_seconds
        self.clock = clock
        self.max_sessions = max_sessions
        self.max_per_operator = max_per_operator
        # Touching a record is a write: once a minute at most (or a quarter of the idle time).
        self.touch_every = min(60.0, idle_seconds / 4)

    def _path(self, session_id: str, operator: str) -> Path:
        return self.directory / f"{digest(operator, 16)}.{digest(session_id)}"

    def create(self, operator: str, fingerprint: str) -> str:
        """Record a new sign-in; return its id (raise SessionsUnavailable if it cannot be kept)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        record = {"operator": operator, "fingerprint": fingerprint, "started": now}
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.prune(operator)
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".new-")
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
            os.utime(temporary, (now, now))
            os.replace(temporary, self._path(session_id, operator))
        except OSError as error:
            raise SessionsUnavailable(
                f"sign-in is unavailable: cannot record sessions in {self.directory} "
                f"({error.strerror})"
            ) from None
        return session_id

    def get(self, session_id: str, operator: str, touch: bool = True) -> Session | None:
        """Return the live session ``session_id`` of ``operator``; end it if it has expired."""
        path = self._path(session_id, operator)
        try:
            seen = path.stat().st_mtime
            with path.open("rb") as handle:
                record = json.loads(handle.read(MAX_RECORD_BYTES))
            session = Session(
                record["operator"], record["fingerprint"], float(record["started"]), seen
            )
        except FileNotFoundError:
            return None  # ended, pruned, or never made here
        except (OSError, ValueError, KeyError, TypeError):
            self._unlink(path)  # unreadable or damaged: worth nothing, fail closed
            return None
        now = self.clock()
        if session.operator != operator or self.expired(session, now):
            self._unlink(path)
            return None
        if touch and now - seen >= self.touch_every:
            try:
                os.utime(path, (now, now))
            except OSError:
                return None  # deleted meanwhile (a logout in another worker): it stays ended
        return session

    def expired(self, session: Session, now: float) -> bool:
        return now - session.started >= self.lifetime or now - session.seen >= self.idle

    def end(self, session_id: str, operator: str) -> None:
        """End one session (a logout)."""
        self._unlink(self._path(session_id, operator))

    def end_operator(self, operator: str) -> int:
        """End every session of ``operator``; return how many there were."""
        ended = 0
        for entry in self._entries():
            if entry.name.startswith(digest(operator, 16) + "."):
                ended += self._unlink(Path(entry.path))
        return ended

    def prune(self, operator: str | None = None) -> None:
        """Delete expired records, then the least recently active beyond the caps.

        Called before ``operator`` signs in, so room is left for one more of theirs.
        """
        now = self.clock()
        live = []
        for entry in self._entries():
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # pruned by another worker meanwhile
            seen = info.st_mtime
            if entry.name.startswith("."):  # a record being written, or left by a crash
                if now - seen > 60:
                    self._unlink(Path(entry.path))
            elif not RECORD_NAME.match(entry.name) or not stat.S_ISREG(info.st_mode):
                continue  # not a record of ours: never counted, never pushes one out
            elif now - seen >= self.idle or not 0 < info.st_size <= MAX_RECORD_BYTES:
                self._unlink(Path(entry.path))  # idle (no need to read it), or damaged
            else:
                live.append((seen, entry.path))
        if len(live) >= self.max_sessions:
            # Full: only records that read as records count (junk must not push out sessions).
            live = [item for item in live if self._readable(Path(item[1]))]
        live.sort()  # least recently active first
        doomed = []
        if operator is not None:
            prefix = os.path.join(self.directory, digest(operator, 16) + ".")
            mine = [item for item in live if item[1].startswith(prefix)]
            doomed += mine[: max(0, len(mine) - self.max_per_operator + 1)]
        rest = [item for item in live if item not in doomed]
        doomed += rest[: max(0, len(rest) - self.max_sessions + 1)]
        for _, path in doomed:
            self._unlink(Path(path))

    def count(self) -> int:
        """Return how many records the directory holds (files of other names not counted)."""
        return sum(
            1
            for entry in self._entries()
            if RECORD_NAME.match(entry.name) and entry.is_file(follow_symlinks=False)
        )

    def _readable(self, path: Path) -> bool:
        """Return True if ``path`` holds a session record; delete it if it does not."""
        try:
            with path.open("rb") as handle:
                record = json.loads(handle.read(MAX_RECORD_BYTES))
            if isinstance(record["operator"], str) and isinstance(record["fingerprint"], str):
                float(record["started"])
                return True
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self._unlink(path)
        return False

    def _entries(self) -> list:
        try:
            return list(os.scandir(self.directory))
        except OSError:
            return []

    @staticmethod
    def _unlink(path: Path) -> int:
        try:
            path.unlink()
            return 1
        except OSError:
            return 0
