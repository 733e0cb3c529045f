"""Secret keys that hold: weak, short, missing or unreadable keys stop the start in one line."""

import os
import secrets
import subprocess
import sys

import pytest
from live import GUNICORN_ARGS, LIVE_SECRET_KEY, ROOT, LiveServer

from webapp import create_app
from webapp.accounts.keys import GENERATE, configured_key_problem, weakness
from webapp.core.config import load_settings
from webapp.node.app import ConfigError

WEAK_KEYS = {
    "short": "k3Y-9f1c2e7a4b8d",
    "one character": "a" * 64,
    "few characters": "0101010101010101010101010123012301230123",
    "repeated unit": "f7Qz!" * 10,
    "changeme": "please-changeme-in-production-0x7f3a9d",
    "secret": "My-Super-SECRET-key-for-the-pipeline-manager",
    "password": "P4ssw0rd-password-Password-for-flask-2026!",
    "keyboard run": "x7Kq-abcdefghijkl-0Zp9Wm3T-8vL2rN6yH1sD",
    # Judged by estimated guesses (issue 15.11): repeats, leetspeak words, few symbols.
    "Tr0ub4dor x3": "Tr0ub4dor&3" * 3 + "!",
    "leetspeak": "s3cr3t-p4ssw0rd-ch4ng3m3-pl34s3-n0w",
    "leetspeak 2": "4dm1n-p4ssw0rd-pr0duct10n-s3rv3r-k3y",
    "eight emoji": "😀😁😂🤣😃😄😅😆",
    "words and a year": "pipeline-manager-production-key-2026!",
}


@pytest.mark.parametrize("key", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
def test_weak_keys_are_named_weak(key):
    assert weakness(key)


def test_generated_keys_are_accepted():
    for _ in range(300):  # zxcvbn takes ~10-70 ms a key
        assert weakness(secrets.token_hex(32)) is None
        assert weakness(secrets.token_urlsafe(32)) is None
        assert weakness(secrets.token_hex(16)) is None
    assert weakness(LIVE_SECRET_KEY) is None


def clean_env(**variables):
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIPELINE_")}
    env.pop("WEB_CONCURRENCY", None)
    env.pop("GUNICORN_CMD_ARGS", None)
    return {**env, **variables}


def refused_start(db_path, tmp_path, **variables):
    """Start gunicorn as the image does; return its output lines, asserting it refused to start."""
    env = clean_env(
        PIPELINE_DB=str(db_path),
        PIPELINE_BIND="127.0.0.1:0",
        PIPELINE_STATE_DIR=str(tmp_path / "state"),
        **variables,
    )
    result = subprocess.run(
        [sys.executable, *GUNICORN_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("name", ["short", "changeme", "repeated unit"])
def test_gunicorn_refuses_a_weak_key_in_one_line(db_path, tmp_path, name):
    lines = refused_start(db_path, tmp_path, PIPELINE_SECRET_KEY=WEAK_KEYS[name])
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: PIPELINE_SECRET_KEY ")
    assert GENERATE in lines[0]
    assert WEAK_KEYS[name] not in lines[0]  # the message never prints the key


@pytest.mark.slow
def test_gunicorn_refuses_a_weak_key_file_in_one_line(db_path, tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("changeme\n")
    key_file.chmod(0o600)
    (line,) = refused_start(db_path, tmp_path, PIPELINE_SECRET_KEY_FILE=str(key_file))
    assert line.startswith(f"Error: PIPELINE_SECRET_KEY_FILE ({key_file}) is too short")
    assert GENERATE in line


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["missing", "directory", "unreadable", "not UTF-8", "FIFO"])
def test_gunicorn_refuses_a_bad_key_file_in_one_line(db_path, tmp_path, problem):
    key_file = tmp_path / "secret_key"
    expected = {
        "missing": "(No such file or directory)",
        "directory": "is not a regular file",
        "unreadable": "(Permission denied)",
        "not UTF-8": "is not UTF-8 text",
        "FIFO": "is not a regular file",
    }[problem]
    if problem == "directory":
        key_file.mkdir()
    elif problem == "unreadable":
        key_file.write_text(LIVE_SECRET_KEY)
        key_file.chmod(0)
        if os.geteuid() == 0:
            expected = None  # root reads any file: the key is accepted, nothing to refuse
    elif problem == "not UTF-8":
        key_file.write_bytes(b"\xff\xfe" + LIVE_SECRET_KEY.encode())
    elif problem == "FIFO":
        os.mkfifo(key_file)  # opening it must not wait for a writer
    if expected is None:
        pytest.skip("running as root: a mode-0 file is readable")
    (line,) = refused_start(db_path, tmp_path, PIPELINE_SECRET_KEY_FILE=str(key_file))
    assert line.startswith("Error: PIPELINE_SECRET_KEY_FILE: ") and expected in line, line


@pytest.mark.slow
def test_gunicorn_refuses_to_start_without_a_key(db_path, tmp_path):
    (line,) = refused_start(db_path, tmp_path)
    assert line.startswith("Error: PIPELINE_SECRET_KEY is not set") and GENERATE in line


@pytest.mark.slow
def test_development_with_several_workers_is_refused(db_path, tmp_path):
    lines = refused_start(db_path, tmp_path, PIPELINE_ENV="development", WEB_CONCURRENCY="2")
    (error,) = [line for line in lines if "Error:" in line]
    assert error.startswith("Error: PIPELINE_ENV=development with 2 workers")
    assert "WEB_CONCURRENCY=1" in error
    assert len(lines) <= 2, lines  # at most gunicorn's own "Starting gunicorn" line before it
    # gunicorn's own -w (or GUNICORN_CMD_ARGS) is counted too, not only WEB_CONCURRENCY.
    lines = refused_start(
        db_path,
        tmp_path,
        PIPELINE_ENV="development",
        WEB_CONCURRENCY="1",
        GUNICORN_CMD_ARGS="--workers 3",
    )
    assert any("development with 3 workers" in line for line in lines), lines


@pytest.mark.slow
def test_development_with_one_worker_starts_without_a_key(db_path):
    env = {"PIPELINE_ENV": "development", "PIPELINE_SECRET_KEY": ""}
    with LiveServer(db_path, workers=1, env=env) as server:
        assert server.process.poll() is None


@pytest.mark.slow
def test_a_bad_worker_count_is_one_line(db_path, tmp_path):
    lines = refused_start(
        db_path, tmp_path, PIPELINE_SECRET_KEY=LIVE_SECRET_KEY, WEB_CONCURRENCY="0"
    )
    assert lines == ["Error: WEB_CONCURRENCY must be a whole number from 1 to 64 (got '0')"]


def test_the_app_factory_refuses_a_weak_key_outside_the_cli(db_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_SECRET_KEY", "secret")
    monkeypatch.setenv("PIPELINE_DB", str(db_path))
    with pytest.raises(ConfigError, match="is too short .* refusing to start"):
        create_app()
    monkeypatch.setenv("PIPELINE_ENV", "development")  # a key that is set must be strong anyway
    with pytest.raises(ConfigError, match="is too short"):
        create_app()


def test_flask_run_with_a_weak_key_serves_only_the_refusal(db_path, monkeypatch):
    """Under the flask CLI the commands still work, but no page is served with a weak key."""
    import click

    monkeypatch.setenv("PIPELINE_SECRET_KEY", "secretsecretsecretsecretsecretsecret")
    monkeypatch.setenv("PIPELINE_DB", str(db_path))
    with click.Context(click.Command("run")):
        app = create_app()
    assert app.config["SECRET_KEY"] != "secretsecretsecretsecretsecretsecret"
    response = app.test_client().get("/")
    assert response.status_code == 503
    assert "refusing to serve" in response.get_data(as_text=True)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o666])
def test_a_key_file_that_others_can_read_is_refused(tmp_path, mode):
    key_file = tmp_path / "secret_key"
    key_file.write_text(LIVE_SECRET_KEY + "\n")
    key_file.chmod(mode)
    settings = load_settings({"PIPELINE_SECRET_KEY_FILE": str(key_file)})
    problem = configured_key_problem(settings, development=False)
    assert problem and f"(mode {mode:04o})" in problem and "0640 or 0600" in problem
    key_file.chmod(0o640)
    assert configured_key_problem(settings, development=False) is None


def test_a_system_file_is_no_key_file():
    settings = load_settings({"PIPELINE_SECRET_KEY_FILE": "/etc/passwd"})
    assert "can be read or written by every user" in configured_key_problem(settings, False)


@pytest.mark.slow
def test_gunicorn_refuses_a_key_file_others_can_read(db_path, tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text(LIVE_SECRET_KEY + "\n")
    key_file.chmod(0o644)
    (line,) = refused_start(db_path, tmp_path, PIPELINE_SECRET_KEY_FILE=str(key_file))
    assert line.startswith(f"Error: PIPELINE_SECRET_KEY_FILE ({key_file}) can be read")
