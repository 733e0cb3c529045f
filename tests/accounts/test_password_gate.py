"""One password check at a time, server-wide (webapp/password_gate.py)."""

import base64
import time

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


def test_a_busy_gate_answers_503_and_counts_no_failure(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch)
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
