"""Helpers for the web tests: a bcrypt users file, apps with operators, logging in."""

import base64
import re

import bcrypt

from webapp import create_app

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}


def write_users(path, passwords=PASSWORDS):
    """Write an htpasswd file like ``htpasswd -nB`` would ($2y$ prefix), with cheap rounds."""
    lines = []
    for name, password in passwords.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{name}:$2y${hashed[4:]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_app(db_path, tmp_path, monkeypatch, users=True, **config):
    """Return an app on ``db_path``; CSRF is off unless ``WTF_CSRF_ENABLED=True`` is passed."""
    for name in ("PIPELINE_DB", "PIPELINE_USERS_FILE", "PIPELINE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = {
        "TESTING": True,
        "DB": str(db_path),
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "LOGIN_THROTTLE_DIR": str(tmp_path / "throttle"),
        "STATE_DIR": str(tmp_path / "state"),  # sessions and the users-file report
        "LOGIN_REFUSAL_PAUSE": 0,  # refused logins answer at once (auth.refuse)
        "USERS_FILE": str(write_users(tmp_path / "users.htpasswd")) if users else None,
    }
    settings.update(config)
    return create_app(settings)


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def log_in(client, name="alice", password=None):
    """Log ``name`` in through the login form (with its CSRF token); return the response."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login",
        data={"username": name, "password": password or PASSWORDS[name], "csrf_token": token},
    )


def basic(name="alice", password=None):
    raw = f"{name}:{password or PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
