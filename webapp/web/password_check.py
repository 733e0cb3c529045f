"""Check a password under the login limits: who may try, when, and how many hashes at once.

Before any bcrypt: refuse while the users file is unusable (503), while the name and address or
the address alone is locked (429 with Retry-After, throttle.py), then reserve the attempt (it
counts as a failure only once it has failed). The hash itself waits for the server-wide gate
(password_gate.py). Concurrent checks of the same credentials from the same client share one
check (single flight): a script calling the API in parallel with one account costs one bcrypt
and one reservation per worker, not one each. A refusal pauses briefly first, so that a client
ignoring Retry-After cannot make the server answer thousands a second.
"""

import threading
import time

from flask import current_app, request

from webapp.accounts import users
from webapp.accounts.password_gate import WAIT, PasswordGate
from webapp.accounts.single_flight import SingleFlight
from webapp.accounts.throttle import LoginThrottle, client_block, whole_seconds
from webapp.core.errors import PipelineError
from webapp.web.operators import signin_problem, state_dir, users_file

REFUSAL_PAUSE = 0.5  # seconds a refused login sleeps before its answer (see refuse())


class TooManyAttempts(PipelineError):
    """Too many failed logins from this address, or for this name from it: wait."""

    http_status = 429

    def __init__(self, wait: float):
        self.retry_after = whole_seconds(wait)
        super().__init__(f"too many failed logins: try again in {self.retry_after} s")


class SignInUnavailable(PipelineError):
    """Nobody can sign in until an administrator fixes the users file."""

    http_status = 503


class SignInBusy(PipelineError):
    """Other password checks hold the gate (password_gate.py): try again in a second."""

    http_status = 503
    retry_after = 1


def throttle() -> LoginThrottle:
    directory = current_app.config.get("LOGIN_THROTTLE_DIR") or state_dir() / "login-throttle"
    return current_app.extensions.setdefault("login_throttle", LoginThrottle(directory))


def password_gate() -> PasswordGate:
    config = current_app.config
    return current_app.extensions.setdefault(
        "pipeline.password_gate",
        PasswordGate(
            state_dir() / "password-check.lock", wait=config.get("PASSWORD_GATE_WAIT", WAIT)
        ),
    )


def login_flights() -> SingleFlight:
    return current_app.extensions.setdefault("pipeline.login_flights", SingleFlight())


def check_password(name: str, password: str, verify=users.verify) -> bool:
    """Return True for a right password; raise TooManyAttempts before hashing when limited."""
    problem = signin_problem()
    if problem:
        raise SignInUnavailable(f"sign-in is unavailable: {problem}")
    address = request.remote_addr or "?"
    wait = throttle().wait_seconds(name, address)
    if wait > 0:
        refuse(wait)  # even the right password waits: no oracle while locked
    if users.cached_success(users_file(), name, password):
        return True  # HTTP Basic repeats the password on every call: no bcrypt each time
    key = (users.login_key(users_file(), name, password), client_block(address), verify)
    return login_flights().run(key, lambda: checked(name, password, address, verify))


def checked(name: str, password: str, address: str, verify) -> bool:
    """Check the password under a reservation and the gate; settle the reservation."""
    wait, token = throttle().reserve(name, address)
    if wait > 0:
        refuse(wait)
    outcome = "unchecked"
    try:
        with password_gate().slot() as free:
            if not free:
                pause()  # answered at once, a client ignoring Retry-After would spin here
                raise SignInBusy("sign-in is busy: try again in 1 s")
            ok = verify(users_file(), name, password)
            outcome = "ok" if ok else "failed"
    finally:
        throttle().settle(name, address, token, outcome)  # busy: not checked, not a failure
    return ok


def refuse(wait: float):
    """Raise TooManyAttempts, after a pause (see pause())."""
    pause()
    raise TooManyAttempts(wait)


def pause() -> None:
    """Sleep briefly before a refusal, while few other refusals are pausing.

    A sprayer that ignores Retry-After would otherwise get thousands of cheap refusals a second,
    and answering them would take the CPU and the GIL from pages and polls. Asleep, a refusal
    costs a thread and no CPU: at most a quarter of a worker's threads pause at once (the rest
    are answered at once), so the pause cannot take the worker either.
    """
    pause = current_app.config.get("LOGIN_REFUSAL_PAUSE", REFUSAL_PAUSE)
    pausing = current_app.extensions.get("pipeline.refusal_pauses")
    if pausing is None:
        slots = max(1, int(current_app.config.get("WORKER_THREADS") or 1) // 4)
        pausing = current_app.extensions.setdefault(
            "pipeline.refusal_pauses", threading.BoundedSemaphore(slots)
        )
    if pause > 0 and pausing.acquire(blocking=False):
        try:
            time.sleep(pause)
        finally:
            pausing.release()
