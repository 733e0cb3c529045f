"""Slow down repeated failed logins, per operator name and client address, across workers.

State is one small file per (name, address) key in a directory, updated under ``flock``: every
gunicorn worker on the host sees the same count, which a signed session cookie could not give
(the attacker simply drops the cookie). No Flask here.

Policy: ``FREE_ATTEMPTS`` failures cost nothing; each further failure locks the key for twice as
long as the last, up to ``MAX_DELAY`` seconds. A success clears the key, and so does an hour
without failures (old files are pruned now and then). If the directory cannot
be written, counts are kept per process instead (the limit is then per worker).
"""

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

FREE_ATTEMPTS = 3
MAX_DELAY = 300.0
FORGET_AFTER = 3600.0  # seconds after the last failure when a key starts again from zero
PRUNE_EVERY = 100  # failures recorded by one process between two prunes of the directory


def delay_after(failures: int) -> float:
    """Return how many seconds a key stays locked after ``failures`` consecutive failures."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return min(2.0 ** (failures - FREE_ATTEMPTS), MAX_DELAY)


class LoginThrottle:
    """Count failures per key in ``directory``; tell how long a key must still wait."""

    def __init__(self, directory, clock=time.time):
        self.directory = Path(directory)
        self.clock = clock
        self._memory: dict[str, dict] = {}
        self._failures_seen = 0

    def _path(self, name: str, address: str) -> Path:
        digest = hashlib.sha256(f"{name}\0{address}".encode()).hexdigest()
        return self.directory / digest

    def _update(self, name, address, change):
        """Apply ``change(state) -> state`` under an exclusive lock; return the new state."""
        path = self._path(name, address)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            state = change(self._memory.get(path.name, {}))
            self._memory[path.name] = state
            return state
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                state = json.loads(handle.read() or "{}")
            except ValueError:
                state = {}
            state = change(state)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(state))
        return state

    def wait_seconds(self, name: str, address: str) -> float:
        """Return how long this key must still wait before its next attempt (0: go ahead)."""
        path = self._path(name, address)
        try:
            state = json.loads(path.read_text() or "{}")
        except OSError:  # no failures on file (or no directory: see the memory fallback)
            state = self._memory.get(path.name, {})
        except ValueError:
            state = {}
        until = state.get("locked_until", 0.0)
        return max(0.0, until - self.clock())

    def failed(self, name: str, address: str) -> float:
        """Record a failure; return the delay it imposes."""

        now = self.clock()

        def change(state):
            # Failures long past are forgiven: yesterday's typos do not lengthen today's wait.
            recent = now - state.get("last", now) < FORGET_AFTER
            failures = (state.get("failures", 0) if recent else 0) + 1
            return {"failures": failures, "last": now, "locked_until": now + delay_after(failures)}

        state = self._update(name, address, change)
        self._failures_seen += 1
        if self._failures_seen % PRUNE_EVERY == 0:
            self.prune()
        return delay_after(state["failures"])

    def prune(self) -> None:
        """Delete the files of keys whose last failure is forgiven (spraying names fills none)."""
        cutoff = time.time() - FORGET_AFTER  # file times are wall-clock times
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass  # another worker pruned it first

    def succeeded(self, name: str, address: str) -> None:
        """Forget the failures of this key."""
        self._memory.pop(self._path(name, address).name, None)
        self._path(name, address).unlink(missing_ok=True)
