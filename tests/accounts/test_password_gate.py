"""One password check at a time, server-wide (webapp/password_gate.py), a few queued."""

import base64
import threading
import time
from pathlib import Path

from weblib import PASSWORDS, make_app

from webapp.accounts.password_gate import PasswordGate
from webapp.accounts.throttle import FREE_ATTEMPTS


def test_a_held_gate_refuses_after_its_wait(tmp_path):
    first, second = PasswordGate(tmp_path / "gate"), PasswordGate(tmp_path / "gate", wait=0.2)
    with first.slot() as held:
        assert held
        started = time.monotonic()
        with second.slot() as free:
            assert not free
        assert 0.2 <= time.monotonic() - started < 1.0
    with second.slot() as free:
        assert free  # released with the first


def test_without_a_writable_directory_the_gate_is_per_process(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    gate = PasswordGate(blocker / "gate", wait=0.05)
    with gate.slot() as held:
        assert held
        with gate.slot() as free:
            assert not free


def held_flocks(paths) -> int:
    """Return how many of ``paths`` are locked right now (Linux: /proc/locks names inodes)."""
    inodes = {str(path.stat().st_ino) for path in paths if path.exists()}
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if line.split()[5].rsplit(":", 1)[-1] in inodes)


def test_without_a_ticket_a_check_is_refused_at_once(tmp_path):
    """A spray holds at most TICKETS threads of the server; the rest are answered at once."""
    release, outcomes = threading.Event(), []

    def check(gate):
        with gate.slot() as held:
            outcomes.append(held)
            release.wait(timeout=30)

    threads = [
        threading.Thread(target=check, args=(PasswordGate(tmp_path / "gate", wait=30.0),))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    tickets = [tmp_path / f"gate.ticket-{n}" for n in range(3)]
    deadline = time.monotonic() + 30
    while held_flocks(tickets) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # polled: the three checks take their tickets in their own time
    started = time.monotonic()
    with PasswordGate(tmp_path / "gate", wait=30.0).slot() as free:
        refused_at_once = not free and time.monotonic() - started < 5.0
    release.set()
    for thread in threads:
        thread.join(30)
    assert refused_at_once
    assert outcomes == [True, True, True]  # the queued checks got their turn, one after another


def test_a_busy_gate_answers_503_and_counts_no_failure(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, PASSWORD_GATE_WAIT=0.05)
    client = app.test_client()
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    with PasswordGate(tmp_path / "state" / "password-check.lock").slot() as held:
        assert held  # another worker is checking a password
        for _ in range(FREE_ATTEMPTS + 2):
            busy = client.post(
                "/api/pipeline",
                json={"pipeline_type": "raw", "reason": "r"},
                headers={"Authorization": f"Basic {auth}"},
            )
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert busy.get_json() == {"error": "sign-in is busy: try again in 1 s"}
        page = client.post("/login", data={"username": "bob", "password": "x"})
        assert page.status_code == 503 and page.headers["Retry-After"] == "1"
    ok = client.post(
        "/api/pipeline",
        json={"pipeline_type": "raw", "reason": "r"},
        headers={"Authorization": f"Basic {auth}"},
    )
    assert ok.status_code == 200  # the refusals were not counted as failed logins
