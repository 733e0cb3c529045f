"""Operators: the htpasswd file, login and logout, throttling, and `flask user add`."""

import os
import time

import bcrypt
from weblib import PASSWORDS, csrf_from, log_in, make_app

from webapp import accounts
from webapp.throttle import FORGET_AFTER, FREE_ATTEMPTS, LoginThrottle, delay_after


def test_login_sets_an_httponly_lax_session_and_logout_clears_it(web_app):
    client = web_app.test_client()
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert 'id="operator-name">alice<' in client.get("/").get_data(as_text=True)
    assert client.post("/logout").status_code == 302
    assert 'id="operator-name"' not in client.get("/").get_data(as_text=True)


def test_session_cookie_is_secure_over_tls(web_app):
    client = web_app.test_client()
    token = csrf_from(client.get("/login", base_url="https://localhost").get_data(as_text=True))
    response = client.post(
        "/login",
        base_url="https://localhost",
        data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_password_shows_a_form_error(web_app):
    response = log_in(web_app.test_client(), "alice", "wrong")
    assert response.status_code == 200
    assert '<p class="form-error" role="alert">Unknown operator or wrong password.' in (
        response.get_data(as_text=True)
    )


def test_login_redirects_only_within_the_site(web_app):
    client = web_app.test_client()
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    assert client.post("/login?next=/history", data=form).headers["Location"] == "/history"
    for target in ("//evil.example/", "https://evil.example/"):
        assert client.post(f"/login?next={target}", data=form).headers["Location"] == "/"


def test_repeated_failures_lock_the_name_and_address_across_workers(db_path, tmp_path, monkeypatch):
    # Two apps sharing the throttle directory stand for two gunicorn workers.
    first = make_app(db_path, tmp_path, monkeypatch).test_client()
    second = make_app(db_path, tmp_path, monkeypatch).test_client()
    for _ in range(FREE_ATTEMPTS):
        assert log_in(first, "alice", "wrong").status_code == 200
    locked = log_in(second, "alice")  # even the right password waits
    assert locked.status_code == 429
    assert "Too many failed logins: try again in" in locked.get_data(as_text=True)
    assert log_in(second, "bob").status_code == 302  # another name is not affected


def test_throttle_delay_doubles_and_success_clears(tmp_path):
    now = [1000.0]
    throttle = LoginThrottle(tmp_path / "t", clock=lambda: now[0])
    delays = [throttle.failed("alice", "10.0.0.1") for _ in range(FREE_ATTEMPTS + 3)]
    assert delays == [0.0] * (FREE_ATTEMPTS - 1) + [1.0, 2.0, 4.0, 8.0]
    assert throttle.wait_seconds("alice", "10.0.0.1") == 8.0
    assert throttle.wait_seconds("alice", "10.0.0.2") == 0.0
    now[0] += 8.0
    assert throttle.wait_seconds("alice", "10.0.0.1") == 0.0
    throttle.succeeded("alice", "10.0.0.1")
    assert throttle.failed("alice", "10.0.0.1") == 0.0
    assert delay_after(100) == 300.0


def test_throttle_falls_back_to_memory_when_the_directory_is_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    throttle = LoginThrottle(blocker / "sub", clock=lambda: 0.0)
    for _ in range(FREE_ATTEMPTS):
        throttle.failed("alice", "a")
    assert throttle.wait_seconds("alice", "a") == 1.0


def test_removed_account_loses_its_session(web_app, tmp_path):
    client = web_app.test_client()
    log_in(client)
    users = tmp_path / "users.htpasswd"
    users.write_text(
        "\n".join(line for line in users.read_text().splitlines() if "alice" not in line)
    )
    response = client.post("/change/apply", data={"pipeline_type": "raw", "expect_id": "0"})
    assert response.status_code == 403


def test_htpasswd_reading_accepts_bcrypt_only(tmp_path):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "users"
    path.write_text(
        f"# comment\nbee:{hashed}\nwhy:$2y${hashed[4:]}\nmd5:$apr1$abc$def\nbroken:$2y$nonsense\n"
    )
    assert sorted(accounts.load(path)) == ["bee", "broken", "why"]
    assert accounts.verify(path, "bee", "pw") and accounts.verify(path, "why", "pw")
    assert not accounts.verify(path, "why", "nope")
    assert not accounts.verify(path, "md5", "pw") and not accounts.verify(path, "ghost", "pw")
    assert not accounts.verify(path, "broken", "pw")
    assert not accounts.verify(path, "bee", "x" * 100)


def test_user_add_from_stdin_then_update(runner, tmp_path):
    users = tmp_path / "users.htpasswd"
    args = ["user", "add", "carol", "--users-file", str(users), "--password-stdin", "--rounds", "4"]
    result = runner.invoke(args=args, input="first-pass\n")
    assert result.exit_code == 0, result.output
    assert result.output == f"added operator carol in {users}\n"
    line = users.read_text().strip()
    assert line.startswith("carol:$2y$04$") and line.count("\n") == 0
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    result = runner.invoke(args=args, input="second-pass\n")
    assert result.output.startswith("updated operator carol")
    assert accounts.verify(users, "carol", "second-pass")
    assert not accounts.verify(users, "carol", "first-pass")
    assert len(users.read_text().splitlines()) == 1


def test_user_add_prompts_twice_and_uses_the_configured_file(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["user", "add", "dave", "--rounds", "4"], input="pw-1\npw-1\n")
    assert result.exit_code == 0, result.output
    assert accounts.verify(tmp_path / "users.htpasswd", "dave", "pw-1")
    assert accounts.verify(tmp_path / "users.htpasswd", "alice", PASSWORDS["alice"])
    assert log_in(app.test_client(), "dave", "pw-1").status_code == 302


def test_user_add_refuses_bad_input(runner, tmp_path):
    users = str(tmp_path / "users")
    bad_name = runner.invoke(
        args=["user", "add", "a:b", "--users-file", users, "--password-stdin"], input="pw\n"
    )
    assert bad_name.exit_code == 2 and "invalid operator name" in bad_name.output
    empty = runner.invoke(
        args=["user", "add", "eve", "--users-file", users, "--password-stdin"], input="\n"
    )
    assert empty.exit_code == 2 and "password must not be empty" in empty.output
    nowhere = runner.invoke(args=["user", "add", "eve", "--password-stdin"], input="pw\n")
    assert nowhere.exit_code == 2 and "PIPELINE_USERS_FILE" in nowhere.output
    assert not (tmp_path / "users").exists()


def test_cached_verification_forgets_a_changed_password(tmp_path):
    users = tmp_path / "users"
    accounts.set_password(users, "carol", "old-pass", rounds=4)
    assert accounts.verify_cached(users, "carol", "old-pass")
    assert accounts.verify_cached(users, "carol", "old-pass")  # from the cache
    assert not accounts.verify_cached(users, "carol", "wrong")
    accounts.set_password(users, "carol", "new-pass", rounds=4)
    assert not accounts.verify_cached(users, "carol", "old-pass")
    assert accounts.verify_cached(users, "carol", "new-pass")
    assert not accounts.verify_cached(users, "nobody", "new-pass")


def test_throttle_forgets_old_failures_and_prunes_their_files(tmp_path):
    now = [1000.0]
    throttle = LoginThrottle(tmp_path / "t", clock=lambda: now[0])
    for _ in range(FREE_ATTEMPTS + 2):
        throttle.failed("alice", "a")
    now[0] += FORGET_AFTER
    assert throttle.failed("alice", "a") == 0.0  # counts again from one
    stale = tmp_path / "t" / "stale"
    stale.write_text("{}")
    os.utime(stale, (time.time() - FORGET_AFTER - 1,) * 2)
    throttle.prune()
    assert not stale.exists() and len(list((tmp_path / "t").iterdir())) == 1
