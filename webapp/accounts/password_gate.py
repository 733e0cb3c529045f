"""One password check at a time, server-wide: bcrypt never takes more than one core.

The login limits (throttle.py) stop one address spraying, but a spray from many addresses at
once (a botnet, or a proxy that forwards them) would run one bcrypt per request on every core,
and pages and polls would wait for CPU. Every check of a password that is not already known
good takes this gate first: an exclusive ``flock`` on a file in the state directory, shared by
all workers. A request that cannot get it within ``wait`` seconds is refused (503, Retry-After)
instead of holding its thread. If the file cannot be opened, the gate is per process. No Flask.
"""

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

WAIT = 0.5  # seconds a login may queue for the gate: two checks' worth at bcrypt's default cost
POLL = 0.01


class PasswordGate:
    def __init__(self, path, wait: float = WAIT):
        self.path = Path(path)
        self.wait = wait
        self._fallback = threading.Lock()

    @contextlib.contextmanager
    def slot(self):
        """Yield True while holding the gate, or False when it stayed busy for ``wait`` s."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            acquired = self._fallback.acquire(timeout=self.wait)
            try:
                yield acquired
            finally:
                if acquired:
                    self._fallback.release()
            return
        try:
            yield self._acquire(fd)
        finally:
            os.close(fd)  # closing releases the lock, if held

    def _acquire(self, fd) -> bool:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(POLL)
