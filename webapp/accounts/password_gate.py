"""One password check at a time, server-wide: bcrypt never takes more than one core.

The login limits (throttle.py) stop one address spraying, but a spray from many addresses at
once (a botnet, or a proxy that forwards them) would run one bcrypt per request on every core,
and pages and polls would wait for CPU. Every check of a password that is not already known
good takes this gate first: an exclusive ``flock`` on a file in the state directory, shared by
all workers.

Only ``TICKETS`` checks may be inside at once, server-wide (one hashing, the others queued):
each first takes a ticket, one of as many small lock files, without waiting. Without a ticket a
check is refused at once (503, Retry-After) instead of holding its thread; with one, it queues
for the gate up to ``wait`` seconds, ample for the few checks ahead of it. So a spray holds at
most ``TICKETS`` threads of the whole server, while a burst of honest logins (a script calling
the API in parallel: one check per worker, see password_check.py) waits its turn. If the files
cannot be opened, the gate and its tickets are per process. No Flask.
"""

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

TICKETS = 3  # checks inside the gate at once, server-wide: one hashing, two queued
WAIT = 5.0  # seconds a ticket holder may queue: two checks ahead, even on a loaded machine
POLL = 0.01


class PasswordGate:
    def __init__(self, path, wait: float = WAIT, tickets: int = TICKETS):
        self.path = Path(path)
        self.wait = wait
        self.tickets = tickets
        self._fallback = threading.Lock()
        self._fallback_tickets = threading.BoundedSemaphore(tickets)

    @contextlib.contextmanager
    def slot(self):
        """Yield True while holding the gate, or False when no ticket was free or the gate
        stayed busy for ``wait`` s."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            gate = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            with self._fallback_slot() as held:
                yield held
            return
        ticket = None
        try:
            ticket = self._ticket()
            yield ticket is not None and self._acquire(gate)
        finally:
            os.close(gate)  # closing releases the lock, if held
            if ticket is not None:
                os.close(ticket)

    def _ticket(self) -> int | None:
        """Return a held ticket's descriptor, or None when every ticket is taken."""
        for number in range(self.tickets):
            try:
                fd = os.open(f"{self.path}.ticket-{number}", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

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

    @contextlib.contextmanager
    def _fallback_slot(self):
        if not self._fallback_tickets.acquire(blocking=False):
            yield False
            return
        try:
            acquired = self._fallback.acquire(timeout=self.wait)
            try:
                yield acquired
            finally:
                if acquired:
                    self._fallback.release()
        finally:
            self._fallback_tickets.release()
