"""Server-side sessions (webapp/sessions.py): records, expiry, ending, pruning and caps."""

import os
import threading

import pytest

from webapp.accounts.sessions import SessionStore, SessionsUnavailable

IDLE, LIFETIME = 600.0, 3600.0


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return SessionStore(tmp_path / "sessions", IDLE, LIFETIME, clock=clock)


def test_a_session_lives_until_it_is_ended(store):
    sid = store.create("alice", "fp")
    session = store.get(sid, "alice")
    assert (session.operator, session.fingerprint) == ("alice", "fp")
    assert store.get(sid, "bob") is None  # the record is the operator's own
    assert store.get("forged-" + sid, "alice") is None
    store.end(sid, "alice")
    assert store.get(sid, "alice") is None
    assert store.count() == 0


def test_the_directory_holds_no_usable_session_id(store, tmp_path):
    sid = store.create("alice", "fp")
    (record,) = os.listdir(tmp_path / "sessions")
    assert sid not in record and "alice" not in record
    assert oct(os.stat(tmp_path / "sessions").st_mode & 0o777) == "0o700"


def test_idle_sessions_expire_and_activity_keeps_them(store, clock):
    sid = store.create("alice", "fp")
    for _ in range(5):  # active every 5 minutes: alive after 25 minutes (idle limit 10)
        clock.now += IDLE / 2
        assert store.get(sid, "alice") is not None
    clock.now += IDLE / 2
    assert store.get(sid, "alice", touch=False) is not None  # a poll: seen, not touched
    clock.now += IDLE / 2
    assert store.get(sid, "alice") is None  # 10 minutes since the last activity
    assert store.count() == 0  # and its record is gone


def test_sessions_end_at_their_absolute_lifetime_however_active(store, clock):
    sid = store.create("alice", "fp")
    while clock.now + IDLE / 2 < 1_000_000.0 + LIFETIME:
        clock.now += IDLE / 2
        assert store.get(sid, "alice") is not None
    clock.now += IDLE / 2
    assert store.get(sid, "alice") is None


def test_a_touch_never_brings_back_an_ended_session(store, clock):
    sid = store.create("alice", "fp")
    clock.now += IDLE / 2  # due for a touch
    path = next((store.directory).iterdir())
    path.unlink()  # another worker's logout lands between the read and the touch
    assert store.get(sid, "alice") is None
    assert not path.exists()


def test_damaged_records_are_refused_and_removed(store):
    sid = store.create("alice", "fp")
    path = next(store.directory.iterdir())
    path.write_text("{not json")
    assert store.get(sid, "alice") is None
    assert not path.exists()


def test_end_operator_ends_only_theirs(store):
    mine = [store.create("alice", "fp") for _ in range(3)]
    theirs = store.create("bob", "fp")
    assert store.end_operator("alice") == 3
    assert all(store.get(sid, "alice") is None for sid in mine)
    assert store.get(theirs, "bob") is not None


def test_sign_ins_prune_expired_records_and_cap_the_rest(tmp_path, clock):
    store = SessionStore(
        tmp_path / "s", IDLE, LIFETIME, clock=clock, max_sessions=5, max_per_operator=3
    )
    old = [store.create(f"op{n}", "fp") for n in range(4)]
    clock.now += IDLE  # all four are idle past the limit
    fresh = store.create("carol", "fp")
    assert store.count() == 1 and store.get(fresh, "carol") is not None
    assert all(store.get(sid, f"op{n}") is None for n, sid in enumerate(old))
    # Per operator: the least recently active of theirs makes room.
    carol = [fresh]
    for _ in range(3):
        clock.now += 1
        carol.append(store.create("carol", "fp"))
    assert store.get(carol[0], "carol", touch=False) is None
    assert all(store.get(sid, "carol", touch=False) for sid in carol[1:])
    # In all: never more than max_sessions live records.
    for n in range(10):
        clock.now += 1
        store.create(f"other{n}", "fp")
    assert store.count() == 5


def test_an_unwritable_directory_refuses_sign_in(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SessionStore(blocker / "sessions", IDLE, LIFETIME)
    with pytest.raises(SessionsUnavailable, match="cannot record sessions"):
        store.create("alice", "fp")
    assert store.get("anything", "alice") is None


def test_concurrent_lookups_and_a_logout(store, clock):
    """Many threads touching while one ends the session: it stays ended."""
    sid = store.create("alice", "fp")
    clock.now += IDLE / 2
    results = []

    def use():
        for _ in range(50):
            results.append(store.get(sid, "alice"))

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    store.end(sid, "alice")
    for thread in threads:
        thread.join()
    assert store.get(sid, "alice") is None
    assert store.count() == 0


def test_junk_files_never_push_out_live_sessions(tmp_path, clock):
    """3 000 files that are no records (issue 15.7) count for nothing toward the cap."""
    store = SessionStore(tmp_path / "s", IDLE, LIFETIME, clock=clock, max_sessions=5)
    live = []
    for n in range(4):
        clock.now += 1
        live.append((f"op{n}", store.create(f"op{n}", "fp")))
    junk = tmp_path / "s"
    for n in range(3000):
        (junk / f"junk-{n}").write_text("{}")
    for n in range(20):  # named like records, but not records: empty, not JSON, wrong fields
        name = f"{n:016x}.{'e' * 64}"
        (junk / name).write_text(["", "not json", '{"operator": 1}', "[]"][n % 4])
        os.utime(junk / name, (clock.now + 5,) * 2)  # newer than every live session
    (junk / ("f" * 16 + "." + "f" * 64)).mkdir()  # a directory named like one
    clock.now += 1
    newest = store.create("carol", "fp")
    assert store.count() == 5
    assert all(store.get(sid, name, touch=False) for name, sid in live)
    assert store.get(newest, "carol", touch=False) is not None
