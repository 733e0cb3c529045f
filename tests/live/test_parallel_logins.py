"""Correct credentials in parallel are answered 200 (issue 16.1): a real 2-worker gunicorn,
an account whose password no worker has verified yet, a cost-12 hash as `user add` writes."""

import base64
import json
import threading

import pytest
from live import LiveServer, request

from webapp.accounts.users import hash_password

pytestmark = pytest.mark.slow

PASSWORD = "parallel logins are fine"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def parallel_posts(url, each_headers):
    """POST a change once per headers, all at once (released together); return the statuses."""
    start, statuses = threading.Barrier(len(each_headers)), []
    body = json.dumps({"pipeline_type": "raw", "reason": "rollout"}).encode()

    def post(headers):
        start.wait(timeout=30)
        statuses.append(request(url + "/api/pipeline", data=body, headers=headers)[0])

    threads = [threading.Thread(target=post, args=(headers,)) for headers in each_headers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_six_parallel_changes_with_the_right_password_all_succeed(db_path, tmp_path):
    users = tmp_path / "users.htpasswd"
    users.write_text(f"rollout:{hash_password(PASSWORD, rounds=12)}\n")
    env = {"PIPELINE_USERS_FILE": str(users)}
    headers = {
        "Authorization": "Basic " + b64(f"rollout:{PASSWORD}"),
        "Content-Type": "application/json",
    }
    with LiveServer(db_path, workers=2, env=env) as server:
        assert parallel_posts(server.url, [headers] * 6) == [200] * 6
        # Nothing failed, so nothing is remembered: no throttle file, not even an empty one.
        throttle = db_path.parent / f"{db_path.name}.state" / "login-throttle"
        assert not throttle.exists() or [p.read_text() for p in throttle.iterdir()] == []
        # The spray limits still hold. One wrong guess sent six times is one guess per worker.
        wrong = {**headers, "Authorization": "Basic " + b64("rollout:not the password")}
        assert parallel_posts(server.url, [wrong] * 6) == [401] * 6
        # Six different guesses at once: only the free attempts left are checked (at most
        # three in all, the two above included), the others are refused before any bcrypt.
        guesses = [
            {**headers, "Authorization": "Basic " + b64(f"rollout:guess {n}")} for n in range(6)
        ]
        statuses = parallel_posts(server.url, guesses)
        assert statuses.count(429) >= 4 and set(statuses) <= {401, 429}, statuses
