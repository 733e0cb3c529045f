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

An attempt *reserves* its place before the password is checked (:meth:`reserve`): an attempt in
progress is not a failure, but it is counted as if it might become one, so concurrent attempts
cannot all slip through while the first is still hashing (a key with ``f`` failures and ``p``
attempts in progress admits one more only while ``f + p`` is below its free attempts). Settling
it (:meth:`settle`) records a failure, clears the pair on success, or just drops the
reservation when it was never checked. A key with nothing to remember has no file: a refunded
attempt leaves none. An hour without failures starts a key again from zero; old files are
pruned now and then, and the directory holds at most ``MAX_FILES`` (the least recently failed
go first). If the directory cannot be written, counts are kept per process instead.
"""

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import math
import os
import secrets
import threading
import time
from pathlib import Path

FREE_ATTEMPTS = 3
ADDRESS_FREE_ATTEMPTS = 5  # "a few": an office behind one NAT still has room for typos
MAX_DELAY = 300.0
FORGET_AFTER = 3600.0  # seconds after the last failure when a key starts again from zero
PRUNE_EVERY = 100  # failures recorded by one process between two prunes of the directory
MAX_FILES = 10_000  # keys kept at most (~40 MiB of tmpfs pages); the least recently failed go
RESERVED_FOR = 120.0  # seconds after which a reservation counts no more (its worker died)
MAX_STATE_BYTES = 4096  # a key's state is tens of bytes: anything larger is not ours


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


def load_state(text: str) -> dict:
    """Return a key's state from its file's text; anything but our JSON object is no state."""
    try:
        state = json.loads(text or "{}")
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def forget_failures(state: dict) -> None:
    """Clear a key's failures (a success); attempts still in progress stay reserved."""
    for field in ("failures", "last", "locked_until"):
        state.pop(field, None)


class LoginThrottle:
    """Count failures per key in ``directory``; tell how long a login must still wait."""

    def __init__(self, directory, clock=time.time, max_files: int = MAX_FILES):
        self.directory = Path(directory)
        self.clock = clock
        self.max_files = max_files
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

    def _open_locked(self, path: Path):
        """Return the key file open and locked, the very file now at ``path`` (not one that
        another worker deleted while this one waited for the lock)."""
        while True:
            handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()

    @contextlib.contextmanager
    def _state(self, key: str):
        """Yield the mutable state of ``key`` under an exclusive lock; save it afterwards (an
        empty state deletes the file)."""
        path = self.directory / key
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = self._open_locked(path)
        except OSError:
            with self._memory_lock:
                state = self._memory.setdefault(key, {})
                yield state
                if not state:
                    self._memory.pop(key, None)
            return
        with handle:
            text = handle.read(MAX_STATE_BYTES)
            state = load_state(text)
            yield state
            if not state:
                path.unlink(missing_ok=True)  # still under the lock: see _open_locked
            elif json.dumps(state) != text:  # the state holds nested dicts: compare as saved
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(state))

    def _read(self, key: str) -> dict:
        try:
            with open(self.directory / key) as handle:
                return load_state(handle.read(MAX_STATE_BYTES))
        except OSError:  # no failures on file (or no directory: see the memory fallback)
            with self._memory_lock:
                return dict(self._memory.get(key, {}))

    # -- policy --------------------------------------------------------------------------------

    def wait_seconds(self, name: str, address: str) -> float:
        """Return how long this login must still wait (0: go ahead). Reads only."""
        now = self.clock()
        waits = [
            self._read(key).get("locked_until", 0.0) - now for key, _ in self._keys(name, address)
        ]
        return max(0.0, *waits)

    def reserve(self, name: str, address: str) -> tuple[float, str | None]:
        """Reserve an attempt before checking it: return ``(0, token)``, or ``(wait, None)``
        when the keys are locked, or would be if the attempts in progress all failed."""
        now = self.clock()
        (pair, pair_free), (alone, alone_free) = self._keys(name, address)
        token = secrets.token_hex(8)
        # Always the pair first, then the address: no two requests wait for each other's lock.
        with self._state(pair) as pair_state, self._state(alone) as address_state:
            keys = ((pair_state, pair_free), (address_state, alone_free))
            wait = max(self._wait(state, free, now) for state, free in keys)
            if wait > 0:
                return wait, None
            for state, _ in keys:
                state.setdefault("pending", {})[token] = now
        return 0.0, token

    @staticmethod
    def _wait(state: dict, free: int, now: float) -> float:
        """Return how long ``state`` refuses a new attempt, counting those in progress."""
        pending = {
            token: started
            for token, started in state.get("pending", {}).items()
            if isinstance(started, int | float) and now - started < RESERVED_FOR
        }
        if pending:
            state["pending"] = pending
        else:
            state.pop("pending", None)
        wait = state.get("locked_until", 0.0) - now
        if wait <= 0 and pending:
            recent = now - state.get("last", now) < FORGET_AFTER
            failures = (state.get("failures", 0) if recent else 0) + len(pending)
            wait = delay_after(failures, free)  # what the lock would be if they all failed
        return max(0.0, wait)

    def settle(self, name: str, address: str, token: str, outcome: str) -> None:
        """End a reserved attempt: ``"failed"`` counts a failure, ``"ok"`` clears the pair,
        ``"unchecked"`` (the server was busy) only drops the reservation."""
        now = self.clock()
        (pair, pair_free), (alone, alone_free) = self._keys(name, address)
        with self._state(pair) as pair_state, self._state(alone) as address_state:
            for state in (pair_state, address_state):
                pending = state.get("pending", {})
                pending.pop(token, None)
                if not pending:
                    state.pop("pending", None)
            if outcome == "ok":
                forget_failures(pair_state)
            elif outcome == "failed":
                self._fail(pair_state, now, pair_free)
                self._fail(address_state, now, alone_free)
        if outcome == "failed":
            self._counted()

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
            delay = delay_after(pair_state["failures"], pair_free)
        self._counted()
        return delay

    def succeeded(self, name: str, address: str) -> None:
        """Forget the pair's failures (a login that was not reserved: tests and tools)."""
        with self._state(self._keys(name, address)[0][0]) as pair_state:
            forget_failures(pair_state)

    def _counted(self) -> None:
        self._failures_seen += 1
        if self._failures_seen % PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> None:
        """Delete the files of keys whose last failure is forgiven, then the least recently
        failed beyond ``max_files`` (a spray from many addresses cannot fill the disk)."""
        cutoff = time.time() - FORGET_AFTER  # file times are wall-clock times
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        kept = []
        for entry in entries:
            try:
                modified = entry.stat().st_mtime
                if modified < cutoff:
                    os.unlink(entry.path)
                else:
                    kept.append((modified, entry.path))
            except OSError:
                pass  # another worker pruned it first
        kept.sort()
        for _, path in kept[: max(0, len(kept) - self.max_files)]:
            with contextlib.suppress(OSError):
                os.unlink(path)
