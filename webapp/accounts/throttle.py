"""Slow down failed logins per operator name and client address, and per address, across workers.

Two counts, each one small file per key in a directory, updated under ``flock`` so that every
gunicorn worker on the host sees the same numbers (a signed cookie could not hold them: the
attacker simply drops it). No Flask here.

- **(name, address)**: ``FREE_ATTEMPTS`` failures cost nothing; each further failure locks the
  pair for twice as long as the last, up to ``MAX_DELAY``. Keyed by address too, so that an
  attacker elsewhere cannot lock an operator out by failing with their name.
- **address**: ``ADDRESS_FREE_ATTEMPTS`` failures for any names, then the same doubling. Spraying
  names or passwords from one address gets cheap refusals (no bcrypt) after a few tries. IPv6
  clients are counted per /64, the block one customer usually holds.

An attempt is charged *before* the password is checked and refunded on success (or when it was
never checked), so concurrent attempts cannot all slip through while the first is still
hashing. A success clears its pair;
an hour without failures starts a key again from zero (old files are pruned now and then). If
the directory cannot be written, counts are kept per process instead (the limit is per worker).
"""

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import math
import os
import threading
import time
from pathlib import Path

FREE_ATTEMPTS = 3
ADDRESS_FREE_ATTEMPTS = 5  # "a few": an office behind one NAT still has room for typos
MAX_DELAY = 300.0
FORGET_AFTER = 3600.0  # seconds after the last failure when a key starts again from zero
PRUNE_EVERY = 100  # failures recorded by one process between two prunes of the directory


def delay_after(failures: int, free: int = FREE_ATTEMPTS) -> float:
    """Return how many seconds a key stays locked after ``failures`` consecutive failures."""
    if failures < free:
        return 0.0
    return min(2.0 ** min(failures - free, 20), MAX_DELAY)


def whole_seconds(wait: float) -> int:
    """Return ``wait`` as the whole seconds to tell a client: rounded up, at least 1."""
    return max(1, math.ceil(wait))


def client_block(address: str) -> str:
    """Return the unit the address limit counts: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]  # not an IP (a unix socket): counted as given
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    """Count failures per key in ``directory``; tell how long a login must still wait."""

    def __init__(self, directory, clock=time.time):
        self.directory = Path(directory)
        self.clock = clock
        self._memory: dict[str, dict] = {}
        self._memory_lock = threading.RLock()  # the pair and address locks nest
        self._failures_seen = 0

    # -- keys and their files ----------------------------------------------------------------

    def _keys(self, name: str, address: str) -> tuple[tuple[str, int], tuple[str, int]]:
        """Return the (file name, free attempts) of the pair key and of the address key."""
        block = client_block(address)
        pair = hashlib.sha256(f"{name}\0{block}".encode("utf-8", "surrogatepass")).hexdigest()
        alone = hashlib.sha256(f"address\0{block}".encode()).hexdigest()
        return (pair, FREE_ATTEMPTS), ("a-" + alone, ADDRESS_FREE_ATTEMPTS)

    @contextlib.contextmanager
    def _state(self, key: str):
        """Yield the mutable state of ``key`` under an exclusive lock; save it afterwards."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / key, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            with self._memory_lock:
                state = self._memory.setdefault(key, {})
                yield state
            return
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                state = json.loads(handle.read() or "{}")
            except ValueError:
                state = {}
            before = dict(state)
            yield state
            if state != before:
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(state))

    def _read(self, key: str) -> dict:
        try:
            return json.loads((self.directory / key).read_text() or "{}")
        except OSError:  # no failures on file (or no directory: see the memory fallback)
            with self._memory_lock:
                return dict(self._memory.get(key, {}))
        except ValueError:
            return {}

    # -- policy --------------------------------------------------------------------------------

    def wait_seconds(self, name: str, address: str) -> float:
        """Return how long this login must still wait (0: go ahead). Reads only."""
        now = self.clock()
        waits = [
            self._read(key).get("locked_until", 0.0) - now for key, _ in self._keys(name, address)
        ]
        return max(0.0, *waits)

    def charge(self, name: str, address: str) -> float:
        """Count an attempt as failed before checking it; return the wait instead if locked."""
        now = self.clock()
        (pair, pair_free), (alone, alone_free) = self._keys(name, address)
        # Always the pair first, then the address: no two requests wait for each other's lock.
        with self._state(pair) as pair_state, self._state(alone) as address_state:
            wait = max(
                pair_state.get("locked_until", 0.0) - now,
                address_state.get("locked_until", 0.0) - now,
            )
            if wait > 0:
                return wait
            self._fail(pair_state, now, pair_free)
            self._fail(address_state, now, alone_free)
        self._failures_seen += 1
        if self._failures_seen % PRUNE_EVERY == 0:
            self.prune()
        return 0.0

    @staticmethod
    def _fail(state: dict, now: float, free: int) -> None:
        # Failures long past are forgiven: yesterday's typos do not lengthen today's wait.
        recent = now - state.get("last", now) < FORGET_AFTER
        failures = (state.get("failures", 0) if recent else 0) + 1
        state.update(failures=failures, last=now, locked_until=now + delay_after(failures, free))

    def failed(self, name: str, address: str) -> float:
        """Record a failure without checking for a lock; return the pair's delay it imposes."""
        now = self.clock()
        (pair, pair_free), (alone, alone_free) = self._keys(name, address)
        with self._state(pair) as pair_state, self._state(alone) as address_state:
            self._fail(pair_state, now, pair_free)
            self._fail(address_state, now, alone_free)
            return delay_after(pair_state["failures"], pair_free)

    def succeeded(self, name: str, address: str) -> None:
        """Forget the pair's failures; refund the charge this attempt made to the address."""
        self._refund(name, address, clear_pair=True)

    def refund(self, name: str, address: str) -> None:
        """Take back the charge of an attempt that was never checked (the server was busy)."""
        self._refund(name, address, clear_pair=False)

    def _refund(self, name, address, clear_pair):
        keys = self._keys(name, address)
        with self._state(keys[0][0]) as pair_state, self._state(keys[1][0]) as address_state:
            if clear_pair:
                pair_state.clear()
            for state, free in ((address_state, keys[1][1]), (pair_state, keys[0][1])):
                failures = max(0, state.get("failures", 0) - 1)
                if failures:
                    last = state.get("last", self.clock())
                    state.update(failures=failures, locked_until=last + delay_after(failures, free))
                else:
                    state.clear()

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
