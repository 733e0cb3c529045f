"""`flask --app webapp.fleet fleet demo`: one command, a centre with real nodes reporting to it."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from live import ROOT, request

DEMO = [sys.executable, "-m", "flask", "--app", "webapp.fleet", "fleet", "demo"]
URL_LINE = re.compile(r"Fleet centre demo: (http://127\.0\.0\.1:\d+) ")
FOLDER_LINE = re.compile(r"Node databases and the centre's store: (\S+)")


def demo_env(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
    return {**env, "PIPELINE_STATE_DIR": str(tmp_path / "cli-state"), "TMPDIR": str(tmp_path)}


def read_line(process, pattern, deadline):
    """Return the match of the first stdout line matching ``pattern`` (the demo prints it)."""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        found = pattern.search(line)
        if found:
            return found
    raise AssertionError(f"the demo never printed {pattern.pattern}")


def summary_when(url, predicate, deadline):
    """Return the centre's summary once ``predicate`` holds for it (it is polled)."""
    summary = None
    while time.monotonic() < deadline:
        status, _, body = request(url + "/api/fleet/summary")
        if status == 200:
            summary = json.loads(body)
            if predicate(summary):
                return summary
        time.sleep(0.25)
    raise AssertionError(f"the centre never showed it; last summary: {summary}")


@pytest.mark.slow
def test_demo_serves_a_reporting_fleet_with_a_stale_and_an_error_node(tmp_path):
    command = [*DEMO, "--nodes", "6", "--port", "0", "--heartbeat", "5", "--change-every", "1"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=demo_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        url = read_line(process, URL_LINE, deadline).group(1)
        folder = read_line(process, FOLDER_LINE, deadline).group(1)
        assert folder.startswith(str(tmp_path))
        assert sorted(os.listdir(folder)).count("edge-001.db") == 1  # real node databases
        wanted = {"reporting": 4, "stale": 1, "error": 1}
        summary = summary_when(url, lambda s: s["by_state"] == wanted, deadline)
        assert summary["nodes"] == 6
        assert set(summary["by_label"]) == {"region", "site"}
        # Operators keep changing pipelines: a change made after the start reaches the centre.
        changed = read_line(process, re.compile(r"(\S+) set (edge-\d+) to (\w+)"), deadline)
        who, node, pipeline_type = changed.groups()
        while time.monotonic() < deadline:
            status, _, body = request(f"{url}/api/fleet/nodes/{node}")
            reported = [(c["updated_by"], c["pipeline_type"]) for c in json.loads(body)["changes"]]
            if (who, pipeline_type) in reported:  # later changes may have followed it
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"{who}'s change of {node} never reached the centre")
        status, _, page = request(url + "/")
        assert status == 200 and 'data-state="stale"' in page and 'data-state="error"' in page
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "Stopping the demo" in rest
    assert not os.path.exists(folder)  # nothing left behind


def test_demo_help_has_an_example(tmp_path):
    result = subprocess.run(
        [*DEMO, "--help"],
        cwd=ROOT,
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "flask --app webapp.fleet fleet demo --nodes 20" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["--nodes", "0"], 2, "Invalid value for '--nodes'"),
        (["--nodes", "٣"], 2, "Invalid value for '--nodes'"),
        (["--nodes", "³"], 2, "Invalid value for '--nodes'"),
        (["--nodes", "1" * 400], 2, "Invalid value for '--nodes'"),
        (["--heartbeat", "1"], 2, "Invalid value for '--heartbeat'"),
        (["--change-every", "nan"], 2, "Invalid value for '--change-every'"),
        (["--seconds", "inf"], 2, "Invalid value for '--seconds'"),
        (["--port", "99999"], 2, "Invalid value for '--port'"),
    ],
)
def test_demo_refuses_bad_options_in_one_line(tmp_path, arguments, status, message):
    result = subprocess.run(
        [*DEMO, "--seconds", "5", *arguments],  # accepted by mistake: it still ends
        cwd=ROOT,
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == status
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fleet-demo-")]


@pytest.mark.slow
def test_demo_on_a_port_in_use_says_so_and_leaves_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*DEMO, "--nodes", "1", "--port", str(port)],
            cwd=ROOT,
            env=demo_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert lines == [
        f"Error: cannot listen on 127.0.0.1:{port} (Address already in use): try --port 0"
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fleet-demo-")]
