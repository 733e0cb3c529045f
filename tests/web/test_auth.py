"""Login and logout, sessions that end, login limits and redirects (webapp/auth.py)."""

import base64
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weblib import PASSWORDS, csrf_from, log_in, make_app, write_users

from webapp.accounts.sessions import SessionStore
from webapp.accounts.throttle import ADDRESS_FREE_ATTEMPTS, FREE_ATTEMPTS

CHANGE = {"pipeline_type": "filtered", "reason": "r", "expect_id": "0"}


def web_users(tmp_path):
    """The users file make_app wrote (reused as is: a rewrite would be a new password)."""
    return str(tmp_path / "users.htpasswd")


def signed_in_as(client):
    """Return the operator the dashboard header names, or None."""
    html = client.get("/").get_data(as_text=True)
    marker = 'id="operator-name">'
    return html.split(marker, 1)[1].split("<", 1)[0] if marker in html else None


def session_cookie(client):
    return client.get_cookie("session").value


def test_login_sets_an_httponly_lax_session_and_logout_clears_it(web_app):
    client = web_app.test_client()
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Expires" not in cookie  # a browser-session cookie; the server decides how long
    assert signed_in_as(client) == "alice"
    assert client.post("/logout").status_code == 302
    assert signed_in_as(client) is None


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


# -- sessions end ----------------------------------------------------------------------------


def test_a_cookie_captured_before_logout_is_worthless_after_it(web_app):
    client = web_app.test_client()
    log_in(client)
    captured = session_cookie(client)
    client.post("/logout")
    thief = web_app.test_client()
    thief.set_cookie("session", captured)
    assert signed_in_as(thief) is None
    assert thief.post("/change/apply", data=CHANGE).status_code == 403


def test_a_replayed_cookie_is_worthless_in_another_worker_and_after_a_restart(
    db_path, tmp_path, monkeypatch
):
    """Apps sharing a state directory stand for workers, and for the server after a restart."""
    first = make_app(db_path, tmp_path, monkeypatch)
    client = first.test_client()
    log_in(client)
    captured = session_cookie(client)
    users = web_users(tmp_path)
    restarted = make_app(db_path, tmp_path, monkeypatch, users=False, USERS_FILE=users)
    other = restarted.test_client()
    other.set_cookie("session", captured)
    assert signed_in_as(other) == "alice"  # the same sign-in, whichever process answers
    client.post("/logout")
    assert signed_in_as(other) is None
    other.set_cookie("session", captured)
    assert other.post("/change/apply", data=CHANGE).status_code == 403


def test_signing_in_again_ends_the_previous_session(web_app):
    client = web_app.test_client()
    log_in(client)
    first = session_cookie(client)
    log_in(client, "bob")
    old = web_app.test_client()
    old.set_cookie("session", first)
    assert signed_in_as(old) is None
    assert signed_in_as(client) == "bob"


def fake_clock(app, start=1_000_000.0):
    """Give ``app`` a session store on a clock the test moves; return the clock (a list)."""
    now = [start]
    config = app.config
    app.extensions["pipeline.sessions"] = SessionStore(
        f"{config['STATE_DIR']}/sessions",
        idle_seconds=60.0 * config["SESSION_IDLE_MINUTES"],
        lifetime_seconds=3600.0 * config["SESSION_HOURS"],
        clock=lambda: now[0],
    )
    return now


def test_sessions_end_after_the_idle_time(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, SESSION_IDLE_MINUTES=30)
    now = fake_clock(app)
    client = app.test_client()
    log_in(client)
    now[0] += 29 * 60
    assert signed_in_as(client) == "alice"  # a page: activity
    for _ in range(40):  # the dashboard's own polls for 40 minutes are not activity
        now[0] += 60
        client.get("/poll?since=0")
    assert signed_in_as(client) is None


def test_sessions_end_after_their_lifetime_however_active(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, SESSION_HOURS=2)
    now = fake_clock(app)
    client = app.test_client()
    log_in(client)
    for _ in range(11):
        now[0] += 10 * 60
        assert signed_in_as(client) == "alice"
    now[0] += 10 * 60
    assert signed_in_as(client) is None


def test_a_removed_account_loses_its_session(web_app, tmp_path):
    client = web_app.test_client()
    log_in(client)
    users = tmp_path / "users.htpasswd"
    lines = users.read_text().splitlines(keepends=True)
    users.write_text("".join(line for line in lines if not line.startswith("alice:")))
    assert client.post("/change/apply", data=CHANGE).status_code == 403
    write_users(users)  # back, with a new hash (new salt): the old session stays ended
    assert signed_in_as(client) is None


def test_a_new_password_ends_existing_sessions(web_app, tmp_path):
    client = web_app.test_client()
    log_in(client)
    write_users(tmp_path / "users.htpasswd", {**PASSWORDS, "alice": "a-brand-new-password"})
    assert signed_in_as(client) is None
    assert log_in(client, "alice", "a-brand-new-password").status_code == 302


@pytest.mark.parametrize("breakage", ["a directory", "UTF-16"])
def test_a_broken_users_file_signs_nobody_in_but_keeps_sessions_for_later(
    web_app, tmp_path, breakage
):
    client = web_app.test_client()
    log_in(client)
    users = tmp_path / "users.htpasswd"
    good = users.read_bytes()
    if breakage == "a directory":
        users.unlink()
        users.mkdir()  # what a failed copy or a bad mount leaves
    else:
        users.write_bytes(good.decode().encode("utf-16"))  # saved by the wrong editor
    assert signed_in_as(client) is None
    assert client.post("/change/apply", data=CHANGE).status_code == 403
    if users.is_dir():
        users.rmdir()
    users.write_bytes(good)  # fixed: nothing about the account changed
    assert signed_in_as(client) == "alice"


def test_an_unwritable_state_directory_refuses_sign_in_in_one_line(db_path, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    app = make_app(db_path, tmp_path, monkeypatch, STATE_DIR=str(blocker / "state"))
    response = log_in(app.test_client())
    assert response.status_code == 503
    assert "Sign-in is unavailable: the server cannot record sessions." in response.get_data(
        as_text=True
    )


# -- login limits ------------------------------------------------------------------------------


def basic(name, password):
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def api_set(client, name, password, address):
    return client.post(
        "/api/pipeline",
        json={"pipeline_type": "raw", "reason": "r"},
        headers=basic(name, password),
        environ_base={"REMOTE_ADDR": address},
    )


def form_login(client, name, password, address):
    return client.post(
        "/login",
        data={"username": name, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_repeated_failures_lock_the_name_and_address_across_workers(db_path, tmp_path, monkeypatch):
    # Two apps sharing the throttle directory stand for two gunicorn workers.
    first = make_app(db_path, tmp_path, monkeypatch).test_client()
    second = make_app(db_path, tmp_path, monkeypatch, users=False, USERS_FILE=web_users(tmp_path))
    second = second.test_client()
    for _ in range(FREE_ATTEMPTS):
        assert log_in(first, "alice", "wrong").status_code == 200
    locked = log_in(second, "alice")  # even the right password waits
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "1"
    assert "Too many failed logins: try again in 1 s." in locked.get_data(as_text=True)
    assert log_in(second, "bob").status_code == 302  # another name is not affected


def test_an_attacker_elsewhere_cannot_lock_an_operator_out(web_app):
    client = web_app.test_client()
    for _ in range(30):  # web and API, far past every limit
        form_login(client, "alice", "guess", "203.0.113.66")
        api_set(client, "alice", "guess", "203.0.113.66")
    assert form_login(client, "alice", "guess", "203.0.113.66").status_code == 429
    assert api_set(client, "alice", PASSWORDS["alice"], "203.0.113.66").status_code == 429
    assert api_set(client, "alice", PASSWORDS["alice"], "198.51.100.7").status_code == 200
    assert form_login(client, "alice", PASSWORDS["alice"], "198.51.100.7").status_code == 302


@pytest.mark.parametrize("entrance", ["form", "api"])
def test_spraying_names_from_one_address_gets_cheap_refusals(web_app, monkeypatch, entrance):
    import bcrypt

    hashed = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *args: hashed.append(1) or real_checkpw(*args))
    client = web_app.test_client()
    attempt = form_login if entrance == "form" else api_set
    answers = [attempt(client, f"user{n}", "guess", "203.0.113.9") for n in range(50)]
    statuses = [answer.status_code for answer in answers]
    expected = 200 if entrance == "form" else 401
    assert statuses[:ADDRESS_FREE_ATTEMPTS] == [expected] * ADDRESS_FREE_ATTEMPTS
    assert set(statuses[ADDRESS_FREE_ATTEMPTS:]) == {429}
    assert len(hashed) == ADDRESS_FREE_ATTEMPTS  # refused before any bcrypt
    refusal = answers[-1]
    assert int(refusal.headers["Retry-After"]) >= 1
    text = refusal.get_data(as_text=True)
    assert "try again in 0 s" not in text and "try again in 1 s" in text
    assert api_set(client, "alice", PASSWORDS["alice"], "198.51.100.7").status_code == 200


def test_a_broken_users_file_refuses_sign_in_without_hashing(web_app, tmp_path):
    (tmp_path / "users.htpasswd").write_bytes(b"\xff\xfe not a users file\n" * 3)
    client = web_app.test_client()
    response = form_login(client, "alice", PASSWORDS["alice"], "10.0.0.1")
    assert response.status_code == 503
    assert "Sign-in is unavailable: the users file has no usable account (3 lines" in (
        response.get_data(as_text=True)
    )
    (tmp_path / "users.htpasswd").unlink()
    (tmp_path / "users.htpasswd").mkdir()
    response = api_set(client, "alice", PASSWORDS["alice"], "10.0.0.1")
    assert response.status_code == 503
    assert response.get_json()["error"] == (
        "sign-in is unavailable: the users file cannot be read (is a directory, not a file)"
    )


# -- proxies -----------------------------------------------------------------------------------


def test_without_proxies_forwarded_headers_are_ignored_and_said_once(web_app, caplog):
    client = web_app.test_client()
    for n in range(FREE_ATTEMPTS):  # a new forged address each time: still one client
        client.post(
            "/login",
            data={"username": "alice", "password": "x"},
            headers={"X-Forwarded-For": f"10.9.9.{n}"},
        )
    assert log_in(client).status_code == 429
    warnings = [r.getMessage() for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
    assert len(warnings) == 1 and "set PIPELINE_PROXY_COUNT" in warnings[0]


def test_with_one_proxy_its_forwarded_address_is_the_client(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch, PROXY_COUNT=1)
    client = app.test_client()
    forged_then_real = {"X-Forwarded-For": "10.0.0.99, 198.51.100.20"}
    for _ in range(FREE_ATTEMPTS):
        client.post("/login", data={"username": "alice", "password": "x"}, headers=forged_then_real)
    # The client at 198.51.100.20 is locked; the forged first entry changes nothing.
    again = {"X-Forwarded-For": "10.0.0.1, 198.51.100.20"}
    locked = client.post(
        "/login", data={"username": "alice", "password": PASSWORDS["alice"]}, headers=again
    )
    assert locked.status_code == 429
    elsewhere = {"X-Forwarded-For": "198.51.100.21"}
    ok = client.post(
        "/login", data={"username": "alice", "password": PASSWORDS["alice"]}, headers=elsewhere
    )
    assert ok.status_code == 302
    tls = client.get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ops"})
    assert tls.status_code == 200
    secure = client.post(
        "/login",
        data={"username": "bob", "password": PASSWORDS["bob"]},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.22"},
    )
    assert "Secure" in secure.headers["Set-Cookie"]


# -- redirects ---------------------------------------------------------------------------------


def test_login_redirects_only_within_the_site(web_app):
    client = web_app.test_client()
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    assert client.post("/login?next=/history", data=form).headers["Location"] == "/history"
    kept = "/history?operator=J%C3%B6ran&before=5"
    assert client.post("/login", query_string={"next": kept}, data=form).headers["Location"] == kept


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "///evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/%2F/evil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "/history\r\nSet-Cookie: x=1",
        "/\tevil",
        "/ok\x00",
        "javascript:alert(1)",
        "history",
        "",
        "/" + "a" * 3000,
        # Paths on this site that are no page (issue 15.17): a fragment, the API, downloads.
        "/poll?since=3",
        "/poll",
        "/api/pipeline",
        "/api/history?limit=5",
        "/history.csv",
        "/healthz",
        "/metrics",
        "/login",
        "/change/apply",
        "/revert/1/apply",
        "/static/app.js",
        "/no-such-page",
    ],
)
def test_login_falls_back_to_the_dashboard_for_other_targets(web_app, target):
    client = web_app.test_client()
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    response = client.post("/login", query_string={"next": target}, data=form)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_refusals_pause_on_a_quarter_of_the_threads_at_most(db_path, tmp_path, monkeypatch):
    """A sprayer ignoring Retry-After waits for each refusal; the pause never takes the worker."""
    import time

    app = make_app(db_path, tmp_path, monkeypatch, LOGIN_REFUSAL_PAUSE=0.3, WORKER_THREADS=8)
    client = app.test_client()
    for _ in range(FREE_ATTEMPTS):
        form_login(client, "alice", "guess", "10.0.0.1")
    started = time.monotonic()
    assert form_login(client, "alice", "guess", "10.0.0.1").status_code == 429
    assert time.monotonic() - started >= 0.3
    pausing = app.extensions["pipeline.refusal_pauses"]
    assert pausing.acquire(blocking=False) and pausing.acquire(blocking=False)  # 8 // 4 slots
    try:
        started = time.monotonic()
        assert form_login(client, "alice", "guess", "10.0.0.1").status_code == 429
        assert time.monotonic() - started < 0.3  # both slots pausing: answered at once
    finally:
        pausing.release()
        pausing.release()


def test_a_poll_sent_to_sign_in_returns_to_the_page_it_came_from(db_path, tmp_path, monkeypatch):
    """PIPELINE_READ_REQUIRES_LOGIN=1: a dashboard's poll after the session ended leads to the
    login, and from there back to the page that polled, never to the bare /poll fragment."""
    from urllib.parse import parse_qs, urlsplit

    app = make_app(db_path, tmp_path, monkeypatch, READ_REQUIRES_LOGIN=True)
    client = app.test_client()
    poll = {"HX-Request": "true", "HX-Current-URL": "http://localhost/history?operator=bob"}
    cases = [
        (poll, "/history?operator=bob"),
        ({**poll, "HX-Current-URL": "http://elsewhere.example/history"}, "/"),
        ({"HX-Request": "true"}, "/"),
        ({}, "/"),  # a bare GET of the fragment itself: the dashboard, not /poll
    ]
    for headers, expected in cases:
        response = client.get("/poll?since=0", headers=headers)
        login = response.headers.get("HX-Redirect") or response.headers["Location"]
        target = parse_qs(urlsplit(login).query)["next"][0]
        assert target == expected, headers
        form = {"username": "alice", "password": PASSWORDS["alice"]}
        done = client.post("/login", query_string={"next": target}, data=form)
        assert done.headers["Location"] == expected
        client.post("/logout")


PAGE_PATHS = re.compile(r"/(history|timeline|change|revert/\d+)?")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    current=st.text(st.characters(max_codepoint=255, exclude_categories=("Cc",)), max_size=60)
    | st.sampled_from(["http://localhost/poll?since=1", "http://localhost//evil", "javascript:x"])
)
def test_a_poll_never_sends_sign_in_anywhere_but_a_page(db_path, tmp_path_factory, current):
    from urllib.parse import parse_qs, urlsplit

    app = make_app(
        db_path, tmp_path_factory.mktemp("hx"), pytest.MonkeyPatch(), READ_REQUIRES_LOGIN=True
    )
    response = app.test_client().get(
        "/poll?since=0", headers={"HX-Request": "true", "HX-Current-URL": current}
    )
    target = parse_qs(urlsplit(response.headers["HX-Redirect"]).query)["next"][0]
    assert PAGE_PATHS.fullmatch(urlsplit(target).path) and not target.startswith("//"), target
