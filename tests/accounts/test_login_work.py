"""A refusal does the same bcrypt work whoever the name is and whatever its hash's cost
(issue 15.4), and parallel checks of one login share one bcrypt (issue 16.1)."""

import threading
import time

import bcrypt
import pytest

from webapp.accounts import users
from webapp.accounts.single_flight import SingleFlight


def line(name, password, cost):
    return f"{name}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()}"


@pytest.fixture
def bcrypt_work(monkeypatch):
    """Record the rounds (2^cost) of every real bcrypt check made, calling through to bcrypt."""
    work = []
    real = users.bcrypt_check

    def recording(secret, hashed):
        work.append(2 ** int(hashed[4:6]))
        return real(secret, hashed)

    monkeypatch.setattr(users, "bcrypt_check", recording)
    return work


def refusal_work(work, path, name, password="wrong password!") -> int:
    work.clear()
    assert users.verify(path, name, password) is False
    return sum(work)


@pytest.mark.parametrize("costs", [(12, 5), (4, 5, 8), (10, 11, 12, 4)])
def test_a_refusal_costs_the_same_for_any_name_and_any_cost(tmp_path, bcrypt_work, costs):
    """htpasswd -nB writes cost 5 beside `user add`'s 12: neither name is told apart."""
    path = tmp_path / "users.htpasswd"
    path.write_text("".join(line(f"u{cost}", "right password", cost) + "\n" for cost in costs))
    top = 2 ** max(costs)
    for cost in costs:
        assert refusal_work(bcrypt_work, path, f"u{cost}") == top
    assert refusal_work(bcrypt_work, path, "nobody") == top
    assert refusal_work(bcrypt_work, path, "Nobody-Else", "\udcff") == top  # a lone surrogate
    # A line that never matches (an MD5 hash, a cost above 14) is an unknown name too.
    path.write_text(path.read_text() + "md5:$apr1$abc$def\nslow:$2y$15$" + "a" * 53 + "\n")
    assert refusal_work(bcrypt_work, path, "md5") == top
    assert refusal_work(bcrypt_work, path, "slow") == top
    assert [why for _, why in users.load(path).skipped][-1].startswith("a bcrypt cost of 15")


def test_a_success_is_one_check_at_the_accounts_own_cost(tmp_path, bcrypt_work):
    path = tmp_path / "users.htpasswd"
    path.write_text(line("weak", "right password", 5) + "\n" + line("ok", "x" * 12, 8) + "\n")
    assert users.verify(path, "weak", "right password") is True
    assert bcrypt_work == [2**5]
    assert users.load(path).cost == 8  # what each refusal costs here


def test_an_empty_file_refuses_at_the_cost_user_add_writes(tmp_path, bcrypt_work):
    path = tmp_path / "users.htpasswd"
    path.write_text("# nobody yet\n")
    assert refusal_work(bcrypt_work, path, "alice") == 2**users.GOOD_COST


def test_concurrent_calls_share_one_run_and_its_outcome():
    flights, started, release = SingleFlight(), threading.Event(), threading.Event()
    answers, calls = [], []

    def work():
        calls.append(1)
        started.set()
        release.wait(timeout=30)
        return "checked"

    leader = threading.Thread(target=lambda: answers.append(flights.run("k", work)))
    leader.start()
    assert started.wait(timeout=30)
    followers = [
        threading.Thread(target=lambda: answers.append(flights.run("k", work))) for _ in range(5)
    ]
    for thread in followers:
        thread.start()
    for _ in range(3000):
        if flights.shared == 5:
            break  # all five wait for the leader's run
        time.sleep(0.01)
    release.set()
    for thread in [leader, *followers]:
        thread.join(timeout=30)
    assert answers == ["checked"] * 6
    assert len(calls) == flights.runs == 1
    assert flights.run("k", lambda: "again") == "again"  # nothing kept after the run


def test_a_flights_exception_reaches_every_caller():
    flights = SingleFlight()

    def fail():
        raise ValueError("busy")

    with pytest.raises(ValueError, match="busy"):
        flights.run("k", fail)
    assert flights._flights == {}
