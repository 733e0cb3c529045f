"""README promises that tests keep true: the test command CI runs, the configuration table, the
Python blocks (tests/test_deploy.py runs its commands)."""

import re
from pathlib import Path

import pytest
from conftest import make_sensor_db

from webapp.core.config import SETTINGS
from webapp.core.store import PipelineStore

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.endswith("-m pytest")
    assert f"\n{ci_command}\n" in README


def test_every_setting_is_in_the_readme_table():
    for setting in SETTINGS:
        assert f"| `{setting.env}` |" in README, setting.env


def python_blocks(text):
    """Return the README's ```python blocks (code an operator or uploader author copies)."""
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks(README)) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_every_python_block_runs(index, tmp_path, monkeypatch):
    """Each block runs as printed, with the production database path pointed at a test file."""
    db_path = make_sensor_db(tmp_path / "sensor_data.db")
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="readme", reason="a database like a node's")
    code = python_blocks(README)[index].replace("/data/sensor_data.db", str(db_path))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "readme"})


# -- the newcomer's walk: every shell block after the quick start, in order, as printed --------

WALKED = {"Quick start", "Command line", "JSON API", "Operators and login"}
WALKED |= {"Notifications (webhooks)", "Rows written by other tools"}
NOT_WALKED = {  # (section, n-th block of it or None for all): why it is not run here
    ("Quick start", 1): "it runs the whole test suite (CI runs it: .ci/run)",
    ("Command line", 0): "the synopsis, not commands",
    ("Restoring a backup", None): "a production path and a backup file that do not exist here",
    ("Container", None): "needs Docker (tests/test_deploy.py runs its CLI commands)",
    ("Running without Docker (systemd)", None): "needs root and systemd (tests/test_systemd.py)",
    ("Fleet jobs (Kubernetes, Bacalhau)", None): "needs a Kubernetes cluster or a Bacalhau network",
    ("Fleet", 0): "runs until stopped on a fixed port (tests/fleet/test_fleet_demo.py runs it)",
    ("Fleet", 1): "needs the centre's fleet secret (tests/fleet/ run fleet keys with one)",
    ("Fleet", 2): "a node's production paths and a centre that is not running here",
}
INSTALL = (
    "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt "
    "--config-settings editable_mode=compat -e . && "
)
PASSWORD = "walk-the-readme-1"


def walked_blocks():
    """The blocks the walk runs, in README order; every other one is in NOT_WALKED."""
    from readmewalk import bash_blocks

    chosen, counts = [], {}
    for block in bash_blocks(README):
        number = counts[block.section] = counts.get(block.section, -1) + 1
        if (block.section, number) in NOT_WALKED or (block.section, None) in NOT_WALKED:
            continue
        assert block.section in WALKED, f"a block in {block.section!r}: walk it, or say why not"
        chosen.append(block)
    return chosen


def test_the_walk_covers_the_newcomers_sections_in_order():
    sections = [block.section for block in walked_blocks()]
    assert sections == [
        "Quick start",
        "Command line",
        "JSON API",
        "Operators and login",
        "Notifications (webhooks)",
        "Rows written by other tools",
    ]
    quick_start = walked_blocks()[0].commands
    assert len(quick_start) == 1 and quick_start[0].startswith(INSTALL)
    # The install the walk leaves out is CI's, without the test extra.
    ci_install = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_install.startswith(INSTALL.replace("-e . ", "-e '.[test]' "))


def localized(line, ports):
    """The production paths and fixed ports of a README line, moved to the walk's."""
    line = line.replace("127.0.0.1:5000", f"127.0.0.1:{ports['dashboard']}")
    line = line.replace("--metrics-port 9101", f"--metrics-port {ports['metrics']}")
    return line.replace("/etc/pipeline-manager/", "instance/")


@pytest.mark.slow
def test_the_readme_shell_blocks_run_in_order_as_printed(tmp_path):
    """Quick start, then every example after it, in a fresh copy with no venv activated."""
    from live import free_port, request
    from ptylib import Terminal
    from readmewalk import fresh_clone, installed_venv, ready_pattern, segments

    clone = fresh_clone(tmp_path / "clone")
    installed_venv(clone)
    ports = {"dashboard": free_port(), "metrics": free_port()}
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # no venv on it: the examples must say .venv/bin
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "FLASK_RUN_PORT": str(ports["dashboard"]),
        "PASSWORD": PASSWORD,  # the Operators block's `printf '%s\n' "$PASSWORD" | ...`
    }
    servers, transcript = [], []
    try:
        for block in walked_blocks():
            for kind, lines in segments(block.commands):
                if kind == "script":
                    script = "\n".join(localized(line, ports) for line in lines)
                    script = script.replace(INSTALL, "")  # done by installed_venv
                    session = Terminal(
                        ["bash", "-e", "-o", "pipefail", "-c", script],
                        password=PASSWORD,
                        env=env,
                        cwd=clone,
                    ).wait()
                    transcript.append(session.output)
                    assert session.returncode == 0, f"{block.section}:\n{script}\n{session.output}"
                    continue
                line = localized(lines, ports).replace(INSTALL, "")
                running = Terminal(["bash", "-c", line], password=PASSWORD, env=env, cwd=clone)
                running.wait_for(ready_pattern(line))
                if re.search(r"\srun\b", line):  # the dashboard: kept for the blocks after it
                    servers.append(running)
                    assert (clone / "instance" / "pipeline.db").exists()  # the demo, at once
                    status, _, body = request(f"http://127.0.0.1:{ports['dashboard']}/readyz")
                    assert status == 200, body  # ready on a fresh demo database
                else:  # monitor, notify: they started; Ctrl+C ends them with exit 0
                    session_code = running.stop()
                    transcript.append(running.output)
                    assert session_code == 0, f"{line}\n{running.output}"
    finally:
        for server in servers:
            server.stop()
    text = "\n".join(transcript)
    assert "pipeline: raw" in text  # `get` on the demo database, right after the quick start
    assert "pipeline set to filtered (enriched), was raw (default)" in text
    assert '"pipeline_type": "aggregated"' in text and '"changed": true' in text  # the API
    assert (clone / "pipeline-history.csv").read_text().startswith("id,")
    assert (clone / "secrets" / "webhook_secret").read_text().startswith("whsec_")


# -- what the deployment steps leave out (issue 15, item 19) ------------------------------------

SECRETS_STEP = "chgrp 10001 secrets/* && chmod 0640 secrets/*"


def block_of(text, section, contains):
    from readmewalk import bash_blocks

    (found,) = [
        b
        for b in bash_blocks(text)
        if b.section == section and any(contains in c for c in b.commands)
    ]
    return found.commands


@pytest.mark.parametrize(
    ("path", "section"), [("README.md", "Container"), ("deploy/README.md", "Docker Compose")]
)
def test_the_container_steps_let_gid_10001_read_every_secret_before_compose_starts(path, section):
    commands = block_of((ROOT / path).read_text(), section, "docker compose up")
    written = [
        n
        for n, line in enumerate(commands)
        if re.search(r"secrets/\S+", line) and ">" in line or "--users-file secrets/" in line
    ]
    (step,) = [n for n, line in enumerate(commands) if SECRETS_STEP in line]
    (start,) = [n for n, line in enumerate(commands) if "docker compose up" in line]
    assert written and max(written) < step < start, commands


def test_the_kubernetes_example_trusts_a_proxy_only_with_its_network_policy():
    import yaml

    documents = yaml.safe_load_all((ROOT / "deploy/kubernetes/deployment.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc and doc["kind"] == "Deployment"]
    (dashboard,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "pipeline-manager"
    ]
    env = {item["name"]: item.get("value") for item in dashboard["env"]}
    commands = block_of(
        README,
        "Fleet jobs (Kubernetes, Bacalhau)",
        "kubectl apply -f deploy/kubernetes/deployment.yaml",
    )
    applied = [c for c in commands if "kubectl apply -f deploy/kubernetes/networkpolicy.yaml" in c]
    if env["PIPELINE_PROXY_COUNT"] != "0":
        assert applied, "a trusted proxy needs the NetworkPolicy applied beside it"
        prose = README[
            README.index("## Fleet jobs (Kubernetes, Bacalhau)") : README.index(
                "## Health and metrics"
            )
        ]
        assert 'PIPELINE_PROXY_COUNT: "1"' in prose and 'set `"0"`' in prose
