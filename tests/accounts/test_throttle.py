"""Failed-login limits (webapp/throttle.py): per name and address, per address, across workers."""

import os
import threading
import time

import pytest

from webapp.accounts.throttle import (
    ADDRESS_FREE_ATTEMPTS,
    FORGET_AFTER,
    FREE_ATTEMPTS,
    RESERVED_FOR,
    LoginThrottle,
    client_block,
    delay_after,
    whole_seconds,
)


@pytest.fixture
def now():
    return [1000.0]


@pytest.fixture
def throttle(tmp_path, now):
    return LoginThrottle(tmp_path / "t", clock=lambda: now[0])


def charge(throttle, name, address, outcome="failed") -> float:
    """Reserve an attempt and settle it with ``outcome``; return the wait if it was refused."""
    wait, token = throttle.reserve(name, address)
    if token is not None:
        throttle.settle(name, address, token, outcome)
    return wait


def test_throttle_delay_doubles_and_success_clears(throttle):
    delays = [throttle.failed("alice", "10.0.0.1") for _ in range(FREE_ATTEMPTS + 3)]
    assert delays == [0.0] * (FREE_ATTEMPTS - 1) + [1.0, 2.0, 4.0, 8.0]
    assert throttle.wait_seconds("alice", "10.0.0.1") == 8.0
    assert throttle.wait_seconds("alice", "10.0.0.2") == 0.0  # another address: not affected
    throttle.succeeded("alice", "10.0.0.1")
    assert throttle.failed("alice", "10.0.0.1") == 0.0  # the pair starts again from zero
    assert delay_after(100) == 300.0 and delay_after(10**9) == 300.0


def test_reserve_refuses_while_locked_and_a_failure_counts_when_it_fails(throttle, now):
    for _ in range(FREE_ATTEMPTS - 1):
        assert charge(throttle, "alice", "10.0.0.1") == 0.0
    assert charge(throttle, "alice", "10.0.0.1") == 0.0  # the attempt that locks still runs
    assert charge(throttle, "alice", "10.0.0.1") == 1.0  # refused, and not counted again
    now[0] += 1.0
    assert charge(throttle, "alice", "10.0.0.1") == 0.0
    assert throttle.wait_seconds("alice", "10.0.0.1") == 2.0


def test_an_attempt_in_progress_is_no_failure(throttle, tmp_path):
    wait, token = throttle.reserve("alice", "10.0.0.1")
    assert wait == 0.0 and throttle.wait_seconds("alice", "10.0.0.1") == 0.0
    throttle.settle("alice", "10.0.0.1", token, "ok")
    for _ in range(FREE_ATTEMPTS + 2):  # the right password, again and again: never limited
        assert charge(throttle, "alice", "10.0.0.1", "ok") == 0.0
    assert list((tmp_path / "t").iterdir()) == []  # nothing to remember: no file at all


def test_a_refunded_attempt_leaves_no_file(throttle, tmp_path):
    for _ in range(50):
        assert charge(throttle, f"user-{_}", "10.0.0.1", "unchecked") == 0.0
    assert list((tmp_path / "t").iterdir()) == []
    charge(throttle, "alice", "10.0.0.1")  # a real failure is kept: pair and address
    assert len(list((tmp_path / "t").iterdir())) == 2


def test_concurrent_attempts_cannot_slip_past_the_limit(tmp_path):
    """Attempts racing in several threads are reserved one after another: a few pass, no more."""
    throttle = LoginThrottle(tmp_path / "t", clock=lambda: 1000.0)
    passed = []

    def attempt():
        passed.append(throttle.reserve("alice", "10.0.0.1")[0] == 0.0)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert passed.count(True) == FREE_ATTEMPTS


def test_a_dead_workers_reservations_expire(throttle, now):
    for _ in range(FREE_ATTEMPTS):
        assert throttle.reserve("alice", "10.0.0.1")[0] == 0.0  # never settled: killed
    assert throttle.reserve("alice", "10.0.0.1")[0] > 0
    now[0] += RESERVED_FOR
    assert throttle.reserve("alice", "10.0.0.1")[0] == 0.0


def test_an_address_spraying_names_is_limited_across_names(throttle):
    for n in range(ADDRESS_FREE_ATTEMPTS):
        assert charge(throttle, f"name-{n}", "10.0.0.9") == 0.0
    assert charge(throttle, "yet-another", "10.0.0.9") == 1.0
    assert throttle.wait_seconds("alice", "10.0.0.9") == 1.0
    # Nobody else is affected: not another address, not the names it sprayed.
    assert throttle.wait_seconds("name-0", "10.0.0.10") == 0.0
    assert charge(throttle, "name-0", "10.0.0.10") == 0.0


def test_a_success_is_not_charged_to_the_address(throttle):
    for n in range(ADDRESS_FREE_ATTEMPTS - 1):
        charge(throttle, f"typo-{n}", "10.0.0.9")
    charge(throttle, "alice", "10.0.0.9", "ok")  # the right password: not a failure
    assert charge(throttle, "bob", "10.0.0.9") == 0.0  # the fifth failure: still allowed
    assert charge(throttle, "carol", "10.0.0.9") > 0  # the sixth attempt waits


def test_the_directory_holds_at_most_max_files(tmp_path):
    throttle = LoginThrottle(tmp_path / "t", max_files=10)
    for n in range(40):  # a spray from many addresses: two files per failure
        throttle.failed("alice", f"10.0.{n}.1")
    throttle.prune()
    assert len(list((tmp_path / "t").iterdir())) == 10


def test_an_attacker_cannot_lock_out_an_operator_elsewhere(throttle):
    for _ in range(200):
        throttle.failed("alice", "203.0.113.66")
    assert throttle.wait_seconds("alice", "203.0.113.66") == 300.0
    assert throttle.wait_seconds("alice", "198.51.100.7") == 0.0
    assert charge(throttle, "alice", "198.51.100.7") == 0.0


def test_ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4():
    assert client_block("2001:db8:1:2:aaaa::1") == client_block("2001:db8:1:2:bbbb::2")
    assert client_block("2001:db8:1:2::1") != client_block("2001:db8:1:3::1")
    assert client_block("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_block("fe80::1%eth0") == "fe80::/64"
    assert client_block("not an address") == "not an address"


def test_messages_round_waits_up_to_whole_seconds():
    assert [whole_seconds(w) for w in (0.0, 0.01, 0.4, 1.0, 1.2, 299.5)] == [1, 1, 1, 1, 2, 300]


def test_throttle_falls_back_to_memory_when_the_directory_is_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    throttle = LoginThrottle(blocker / "sub", clock=lambda: 0.0)
    for _ in range(FREE_ATTEMPTS):
        charge(throttle, "alice", "a")
    assert throttle.wait_seconds("alice", "a") == 1.0
    assert charge(throttle, "alice", "a") == 1.0


def test_throttle_forgets_old_failures_and_prunes_their_files(throttle, now, tmp_path):
    for _ in range(FREE_ATTEMPTS + 2):
        throttle.failed("alice", "a")
    now[0] += FORGET_AFTER
    assert throttle.failed("alice", "a") == 0.0  # counts again from one
    stale = tmp_path / "t" / "stale"
    stale.write_text("{}")
    os.utime(stale, (time.time() - FORGET_AFTER - 1,) * 2)
    throttle.prune()
    assert not stale.exists() and len(list((tmp_path / "t").iterdir())) == 2  # pair, address


def test_two_processes_share_the_counts(tmp_path):
    """Two throttles on one directory stand for two gunicorn workers."""
    first, second = LoginThrottle(tmp_path / "t"), LoginThrottle(tmp_path / "t")
    for _ in range(FREE_ATTEMPTS):
        charge(first, "alice", "10.0.0.1")
    assert second.wait_seconds("alice", "10.0.0.1") > 0
    assert charge(second, "alice", "10.0.0.1") > 0


def reserve_and_succeed(directory, rounds=100):
    throttle = LoginThrottle(directory)

    def logins():
        for _ in range(rounds):
            wait, token = throttle.reserve("alice", "10.0.0.1")
            if token is not None:
                throttle.settle("alice", "10.0.0.1", token, "ok")

    threads = [threading.Thread(target=logins) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_racing_workers_lose_no_reservation(tmp_path):
    """Two processes of three threads reserve and settle one key: every update is kept, so the
    key ends with nothing to remember (a lost update would leave a reservation behind)."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=reserve_and_succeed, args=(tmp_path / "t",)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert list((tmp_path / "t").iterdir()) == []
