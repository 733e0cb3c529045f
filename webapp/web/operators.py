"""The users file as the web app sees it: the accounts, why sign-in is unavailable, and one log
report per problem.

A users file that cannot be used never takes the site down: every page still answers, read-only,
with a notice; ``/readyz`` answers 503 naming the problem; the log says what is wrong once, not
per request (and once for all workers: see :func:`first_to_report`).
"""

import fcntl
import os
from pathlib import Path

from flask import current_app

from webapp.accounts import users

REPORTED = "pipeline.users_report"  # app.extensions key: the report this process last saw


def users_file():
    return current_app.config.get("USERS_FILE")


def state_dir() -> Path:
    """Return the directory every worker shares (PIPELINE_STATE_DIR, else the instance folder)."""
    return Path(current_app.config.get("STATE_DIR") or current_app.instance_path)


def operators() -> users.Accounts:
    """Return the accounts of the users file, reporting a new problem with it to the log."""
    found = users.load(users_file())
    path = users_file()
    if path:
        report = problem_report(path, found)
        seen = current_app.extensions.setdefault(REPORTED, {})
        if seen.get(path) != report:
            seen[path] = report
            if first_to_report(report):
                log_report(path, report, found)
    return found


def signin_problem() -> str | None:
    """Return why nobody can sign in because of the users file (None: the file is usable)."""
    found = operators()
    if found.problem:
        return f"the users file {found.problem}"
    if found.skipped and not found.users:
        return (
            f"the users file has no usable account ({len(found.skipped)} lines cannot be "
            "used: see the server log)"
        )
    return None


def accounts_configured() -> bool:
    """Return True when at least one operator account exists (else: read-only dashboard)."""
    return bool(operators().users)


def problem_report(path, found: users.Accounts) -> str:
    """Return the log lines that describe what is wrong with the file ('' when nothing is)."""
    if found.problem:
        return (
            f"users file {path} {found.problem}: nobody can sign in, the site is read-only "
            "until it is fixed"
        )
    return "\n".join(
        f"users file {path} line {number}: {why}; this line never matches"
        for number, why in found.skipped
    )


def log_report(path, report: str, found: users.Accounts) -> None:
    logger = current_app.logger
    if not report:
        logger.warning("users file %s: usable again (%d accounts)", path, len(found.users))
        return
    for line in report.splitlines():
        (logger.error if found.problem else logger.warning)("%s", line)


def first_to_report(report: str) -> bool:
    """Return True if no worker of this server has logged ``report`` yet (and claim it).

    The workers share a small file in the state directory holding the last report and the
    gunicorn master's pid, so a restart reports a problem that is still there once more.
    """
    marker = state_dir() / "users-file-report"
    stamp = f"{os.getppid()}\n{report}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return True  # nowhere to share it: each worker reports once
    with os.fdopen(fd, "r+", encoding="utf-8", errors="replace") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        previous = handle.read()
        if previous == stamp:
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(stamp)
    # Something to say: a problem, or that the one reported before is gone.
    return bool(report) or bool(previous.partition("\n")[2])
