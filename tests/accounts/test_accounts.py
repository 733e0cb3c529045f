"""The users file: reading that never takes the site down, and `flask user add/list/remove`."""

import logging
import os
import stat

import bcrypt
import pytest
from weblib import PASSWORDS, log_in, make_app, write_users

from webapp.accounts import users as users_module
from webapp.accounts.users_file import NEW_FILE_MODE

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()  # $2b$
HASH_Y = "$2y$" + HASH[4:]


# -- reading -----------------------------------------------------------------------------------


def test_bom_crlf_and_surrounding_spaces_are_tolerated(tmp_path):
    path = tmp_path / "users"
    path.write_bytes(
        b"\xef\xbb\xbfbee:" + HASH.encode() + b"\r\n"
        b"   why : " + HASH_Y.encode() + b"  \r\n"
        b"\t# a comment with a byte that is not UTF-8: \xff\r\n"
        b"\r\n"
    )
    found = users_module.load(path)
    assert found.problem is None and found.skipped == ()
    assert sorted(found.users) == ["bee", "why"]
    assert users_module.verify(path, "bee", "pw") and users_module.verify(path, "why", "pw")


def test_unusable_lines_are_named_by_number_and_never_match(tmp_path):
    path = tmp_path / "users"
    lines = [
        f"bee:{HASH}",
        "md5:$apr1$abc$defghijklmnopqrstuvw",
        "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "crypt:$6$salt$hash",
        "plain:password",
        "broken:$2y$nonsense",
        "no colon here",
        f"bad name:{HASH}",
        f"Bee:{HASH}",  # the same name as line 1 but for case
        f"-rf:{HASH}",
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + f"caf\xe9:{HASH}\n".encode("latin-1"))
    found = users_module.load(path)
    assert list(found.users) == ["bee"]
    reasons = dict(found.skipped)
    assert reasons[2] == "an MD5 (apr1) hash: only bcrypt (htpasswd -B) is accepted"
    assert reasons[3] == "a SHA-1 hash: only bcrypt (htpasswd -B) is accepted"
    assert reasons[4] == "a SHA-512-crypt hash: only bcrypt (htpasswd -B) is accepted"
    assert reasons[5] == "plain text or an unknown hash: only bcrypt (htpasswd -B) is accepted"
    assert reasons[6] == "a malformed bcrypt hash: only bcrypt (htpasswd -B) is accepted"
    assert reasons[7] == "no ':' between name and hash"
    assert reasons[8].startswith("the operator name contains U+0020 (space)")
    assert reasons[9] == "repeats the name on line 1"
    assert reasons[10].startswith("the operator name must start with a letter or digit")
    assert reasons[11] == "not valid UTF-8"
    for name, password in [("md5", "pw"), ("sha", "pw"), ("plain", "password"), ("Bee", "pw")]:
        assert not users_module.verify(path, name, password)


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "huge", "unreadable"])
def test_a_file_that_cannot_be_used_is_a_problem_not_an_exception(tmp_path, kind, monkeypatch):
    path = tmp_path / "users"
    expected = {
        "missing": "not found",
        "directory": "cannot be read (is a directory, not a file)",
        "fifo": "cannot be read (is not a regular file)",
        "huge": f"cannot be read (is larger than {users_module.MAX_FILE_BYTES} bytes)",
        "unreadable": "cannot be read (permission denied)",
    }[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"#" * (users_module.MAX_FILE_BYTES + 1))
    elif kind == "unreadable":
        path.write_text(f"bee:{HASH}\n")

        def refuse(*args):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(users_module, "read_file", refuse)
    found = users_module.load(path)
    assert (found.problem, found.users) == (expected, {})
    assert not users_module.verify(path, "bee", "pw")


# -- the site with a broken users file ---------------------------------------------------------

BREAKAGES = ["directory", "not UTF-8", "unreadable", "only md5"]


def break_users_file(path, kind, monkeypatch):
    """Damage the users file as an administrator might; return what /readyz should name."""
    if kind == "directory":
        path.unlink()
        path.mkdir()
        return "cannot be read (is a directory, not a file)"
    if kind == "not UTF-8":
        path.write_bytes(b"\xff\xfe\xfd garbage\n")
        return "has no usable account (1 lines cannot be used"
    if kind == "unreadable":

        def refuse(*args):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(users_module, "read_file", refuse)
        os.utime(path, (1, 1))  # a new stamp: the cached accounts are not used
        return "cannot be read (permission denied)"
    path.write_text("alice:$apr1$abc$defghijklmnopqrstuvw\n")
    return "has no usable account"


@pytest.mark.parametrize("kind", BREAKAGES)
def test_the_site_stays_up_read_only_when_the_users_file_breaks(
    db_path, tmp_path, monkeypatch, caplog, kind
):
    app = make_app(db_path, tmp_path, monkeypatch)
    client = app.test_client()
    assert log_in(client).status_code == 302
    reason = break_users_file(tmp_path / "users.htpasswd", kind, monkeypatch)
    caplog.set_level(logging.WARNING, logger="webapp")
    for _ in range(3):
        for path in ("/", "/history", "/timeline", "/login", "/api/pipeline", "/history.csv"):
            response = client.get(path)
            response.get_data()  # the export streams: read it to the end
            assert response.status_code == 200, (path, response.status_code)
        page = client.get("/").get_data(as_text=True)
        assert 'id="signin-unavailable"' in page and reason.split(" (")[0] in page
        assert 'id="operator-name"' not in page  # nobody is signed in meanwhile
        assert client.get("/poll?since=0").status_code in (200, 204)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert (
            reason in ready.get_json()["reason"] and "users.htpasswd" in ready.get_json()["reason"]
        )
        assert client.get("/healthz").status_code == 200
    refused = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert refused.status_code == 503
    change = {"pipeline_type": "filtered", "reason": "r", "expect_id": "0"}
    assert client.post("/change/apply", data=change).status_code == 403
    records = [record for record in caplog.records if "users.htpasswd" in record.getMessage()]
    assert len(records) == 1, [record.getMessage() for record in records]  # once, not per request


def test_the_problem_is_logged_once_for_all_workers_and_its_end_too(
    db_path, tmp_path, monkeypatch, caplog
):
    users = tmp_path / "users.htpasswd"
    workers = [
        make_app(db_path, tmp_path, monkeypatch, users=False, USERS_FILE=str(users))
        for _ in range(3)
    ]
    write_users(users)
    users.write_text(users.read_text() + "carol:$apr1$x$y\n")
    caplog.set_level(logging.WARNING, logger="webapp")
    for _ in range(3):
        for app in workers:
            app.test_client().get("/")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"users file {users} line 3: an MD5 (apr1) hash: only bcrypt (htpasswd -B) is accepted; "
        "this line never matches"
    ]
    write_users(users)
    for app in workers:
        app.test_client().get("/readyz")
    assert caplog.records[-1].getMessage() == f"users file {users}: usable again (2 accounts)"
    assert len(caplog.records) == 2
    assert all(app.test_client().get("/readyz").status_code == 200 for app in workers)


# -- flask user add / list / remove ------------------------------------------------------------


def add(runner, name, users, password="correct-horse-battery", *extra):
    args = ["user", "add", "--users-file", str(users), "--password-stdin", "--rounds", "4"]
    return runner.invoke(args=[*args, *extra, "--", name], input=password + "\n")


def test_user_add_creates_a_0640_file_and_says_so_then_updates(runner, tmp_path):
    users = tmp_path / "users.htpasswd"
    result = add(runner, "carol", users, "first-password-1")
    assert result.exit_code == 0, result.output
    assert result.output == f"added operator carol in {users} (created, mode 0640)\n"
    line = users.read_text().strip()
    assert line.startswith("carol:$2y$04$") and line.count("\n") == 0
    assert stat.S_IMODE(users.stat().st_mode) == NEW_FILE_MODE
    result = add(runner, "carol", users, "second-password-2")
    assert result.output == f"updated operator carol in {users}\n"
    assert users_module.verify(users, "carol", "second-password-2")
    assert not users_module.verify(users, "carol", "first-password-1")
    assert len(users.read_text().splitlines()) == 1


def test_user_add_keeps_owner_group_mode_and_every_other_byte(runner, tmp_path):
    users = tmp_path / "users.htpasswd"
    original = (
        b"# managed by hand\r\n"
        b"bee:" + HASH.encode() + b"\r\n"
        b"# caf\xe9 (latin-1, not UTF-8)\r\n"
        b"old:$apr1$abc$defghijklmnopqrstuvw\r\n"
    )
    users.write_bytes(original)
    users.chmod(0o604)
    if os.geteuid() == 0:
        os.chown(users, 12345, 23456)  # as root editing an operator's file
    before = users.stat()
    result = add(runner, "carol", users)
    assert result.exit_code == 0, result.output
    after = users.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
        before.st_uid,
        before.st_gid,
        0o604,
    )
    assert after.st_ino != before.st_ino  # replaced by a rename, never rewritten in place
    data = users.read_bytes()
    assert data.startswith(original) and data.endswith(b"\r\n")  # CRLF kept, lines untouched
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary
    assert users_module.verify(users, "carol", "correct-horse-battery")


def test_user_add_follows_a_symlink_instead_of_replacing_it(runner, tmp_path):
    real = tmp_path / "real.htpasswd"
    real.write_text(f"bee:{HASH}\n")
    link = tmp_path / "users.htpasswd"
    link.symlink_to(real)
    assert add(runner, "carol", link).exit_code == 0
    assert link.is_symlink() and "carol:" in real.read_text()


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("a:b", "correct-horse-battery", "invalid operator name 'a:b': it contains U+003A"),
        ("john doe", "correct-horse-battery", "it contains U+0020 (space)"),
        ("аlice", "correct-horse-battery", "it contains U+0430 (cyrillic small letter a)"),
        ("-rf", "correct-horse-battery", "it must start with a letter or digit"),
        ("a\u202eb", "correct-horse-battery", "operator name must be one line of plain text"),
        ("x" * 201, "correct-horse-battery", "operator name is too long"),
        ("eve", "short-pass", "password is too short (at least 12 characters)"),
        ("eve", "", "password is too short"),
        ("eve", "é" * 40, "password is too long (at most 72 bytes)"),
    ],
)
def test_user_add_refuses_bad_names_and_passwords_in_one_line(
    runner, tmp_path, name, password, message
):
    users = tmp_path / "users"
    result = add(runner, name, users, password)
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("Error: ") and message in line, line
    assert not users.exists()


def test_user_add_refuses_a_name_that_differs_only_in_case(runner, tmp_path):
    users = tmp_path / "users"
    assert add(runner, "alice", users).exit_code == 0
    result = add(runner, "Alice", users)
    assert result.exit_code == 2 and "differs from 'Alice' only in case" in result.output


def test_user_add_never_creates_directories(runner, tmp_path):
    users = tmp_path / "no" / "such" / "dir" / "users"
    result = add(runner, "carol", users)
    assert result.exit_code == 2
    assert result.output == f"Error: directory {users.parent} does not exist: create it first\n"
    assert not (tmp_path / "no").exists()


def test_user_add_without_a_file_is_a_usage_error(runner):
    result = runner.invoke(args=["user", "add", "eve", "--password-stdin"], input="x" * 12 + "\n")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: set PIPELINE_USERS_FILE or pass --users-file PATH "
        "(see: flask --app webapp user add --help)"
    ]


def test_user_add_prompts_twice_and_uses_the_configured_file(db_path, tmp_path, monkeypatch):
    """In a real terminal (the prompt refuses anything else: tests/cli/test_user_cli.py)."""
    from ptylib import run_in_terminal
    from workers import clean_env, flask_command

    app = make_app(db_path, tmp_path, monkeypatch)
    password = "dave-password-1"
    env = clean_env(PIPELINE_USERS_FILE=tmp_path / "users.htpasswd", PIPELINE_DB=db_path)
    command = [*flask_command()[:-1], "user", "add", "dave", "--rounds", "4"]
    session = run_in_terminal(command, password=password, env=env, cwd=tmp_path)
    assert session.returncode == 0 and session.prompts == 2, session.output
    assert users_module.verify(tmp_path / "users.htpasswd", "dave", password)
    assert users_module.verify(tmp_path / "users.htpasswd", "alice", PASSWORDS["alice"])
    assert log_in(app.test_client(), "dave", password).status_code == 302


def test_user_list_names_operators_and_warns_about_unusable_lines(runner, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"zed:{HASH}\nbee:{HASH}\nold:$apr1$abc$def\n")
    result = runner.invoke(args=["user", "list", "--users-file", str(users)])
    assert result.exit_code == 0
    assert result.stdout == "bee\nzed\n"
    assert result.stderr == (
        "line 3: an MD5 (apr1) hash: only bcrypt (htpasswd -B) is accepted; it never matches\n"
    )
    users.unlink()
    users.mkdir()
    result = runner.invoke(args=["user", "list", "--users-file", str(users)])
    assert result.exit_code == 5  # README: Exit codes (a users file it cannot use)
    assert result.output == (
        f"Error: the users file {users} cannot be read (is a directory, not a file)\n"
    )


def test_user_remove_rewrites_atomically_and_ends_sessions(db_path, tmp_path, monkeypatch):
    app = make_app(db_path, tmp_path, monkeypatch)
    users = tmp_path / "users.htpasswd"
    users.chmod(0o640)
    client = app.test_client()
    log_in(client)
    inode = users.stat().st_ino
    runner = app.test_cli_runner()
    result = runner.invoke(args=["user", "remove", "alice"])
    assert result.exit_code == 0, result.output
    assert result.output == f"removed operator alice from {users}\n"
    assert users.stat().st_ino != inode and stat.S_IMODE(users.stat().st_mode) == 0o640
    assert sorted(users_module.load(users).users) == ["bob"]
    assert 'id="operator-name"' not in client.get("/").get_data(as_text=True)
    again = runner.invoke(args=["user", "remove", "alice"])
    assert again.exit_code == 2 and again.output == f"Error: no operator 'alice' in {users}\n"


def test_every_user_command_has_help_with_an_example(runner):
    for command in ("add", "list", "remove"):
        result = runner.invoke(args=["user", command, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output and f"user {command}" in result.output
    assert runner.invoke(args=["user", "remove"]).output.splitlines() == [
        "Error: Missing argument 'NAME'. (see: flask --app webapp user remove --help)"
    ]
