"""deploy/systemd/: the dashboard and notifier units for a host without Docker.

- ``systemd-analyze verify`` on each unit, in a scratch root that has the executables the units
  name (so a wrong path or a misspelt directive is reported), and ``systemd-analyze security
  --offline`` under an exposure threshold. Each must also reject a broken copy. Without
  systemd-analyze the two skip, saying why, except under CI=true (.ci/run installs it).
- What the units mean: the image's command, a dedicated user, the hardening, the data directory
  writable, secrets as credentials; the dashboard started with the unit's environment answers
  /readyz, and the notifier's command runs through the real CLI.
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from conftest import make_sensor_db
from live import GUNICORN_ARGS, LIVE_SECRET_KEY, ROOT, LiveServer, request, write_users_file

from webapp.core.config import SETTINGS

UNITS_DIR = ROOT / "deploy" / "systemd"
UNITS = sorted(UNITS_DIR.glob("*.service"))
DASHBOARD = UNITS_DIR / "pipeline-manager.service"
NOTIFY = UNITS_DIR / "pipeline-manager-notify.service"
ANALYZE = shutil.which("systemd-analyze")
EXPOSURE_THRESHOLD = 20  # tenths: systemd-analyze calls up to 2.0 "OK"
SETTING_NAMES = {setting.env for setting in SETTINGS} | {"WEB_CONCURRENCY"}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",  # gunicorn.conf.py's PROMETHEUS_MULTIPROC_DIR lives under /tmp
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
}

needs_analyze = pytest.mark.skipif(
    ANALYZE is None and os.environ.get("CI") != "true",
    reason="systemd-analyze is not installed (apt-get install systemd; .ci/run does)",
)


def directives(path) -> dict[str, list[str]]:
    """Return ``Key -> [values]`` of a unit file's [Service] and [Unit] sections (repeats kept)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def environment(path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in directives(path).get("Environment", []))


def exec_start(path) -> list[str]:
    (command,) = directives(path)["ExecStart"]
    return shlex.split(command)


def scratch_root(tmp_path, units) -> Path:
    """A root with the units in /etc/systemd/system, the host's targets, and an executable stub
    at every path an ExecStart names."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    targets = root / "usr/lib/systemd/system"
    targets.mkdir(parents=True)
    for target in Path("/usr/lib/systemd/system").glob("*.target"):
        if target.is_file() and not target.is_symlink():
            shutil.copy(target, targets)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system")
        stub = root / exec_start(unit)[0].lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return root


def analyze(*args):
    assert ANALYZE, "CI=true: systemd-analyze must be installed (.ci/run installs systemd)"
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=120)


def security(root, unit_name):
    """``systemd-analyze security --offline``: non-zero above the exposure threshold."""
    threshold = f"--threshold={EXPOSURE_THRESHOLD}"
    return analyze("security", "--offline=yes", f"--root={root}", threshold, unit_name)


def broken(tmp_path, unit, old, new) -> Path:
    text = unit.read_text()
    assert old in text, f"{old!r} is no longer in {unit.name}: update this negative check"
    copy = tmp_path / "broken" / unit.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(text.replace(old, new, 1))
    return copy


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_systemd_analyze_verify_passes(tmp_path, unit):
    result = analyze("verify", f"--root={scratch_root(tmp_path, [unit])}", unit.name)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_analyze
@pytest.mark.parametrize(
    ("old", "new"),
    [("ProtectSystem=strict", "ProtectSystem=stricter"), ("PrivateTmp=", "PrivatTmp=")],
)
def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path, old, new):
    copy = broken(tmp_path, DASHBOARD, old, new)
    result = analyze("verify", f"--root={scratch_root(tmp_path, [copy])}", copy.name)
    assert copy.name in result.stderr, result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_systemd_analyze_security_rates_the_unit_ok(tmp_path, unit):
    root = scratch_root(tmp_path, [unit])
    result = security(root, unit.name)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_analyze
def test_systemd_analyze_security_rejects_an_unhardened_copy(tmp_path):
    text = DASHBOARD.read_text()
    kept = [line for line in text.splitlines() if line.split("=")[0] not in HARDENING]
    copy = tmp_path / "broken" / DASHBOARD.name
    copy.parent.mkdir()
    copy.write_text("\n".join(kept) + "\n")
    root = scratch_root(tmp_path, [copy])
    result = security(root, copy.name)
    assert result.returncode != 0, result.stdout


@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_each_unit_runs_hardened_as_a_dedicated_user(unit):
    found = directives(unit)
    assert found["User"] == ["pipeline-manager"] and found["Group"] == ["pipeline-manager"]
    for key, value in HARDENING.items():
        assert found.get(key) == [value], f"{unit.name}: {key}"
    assert found["Type"] == ["exec"] and found["Restart"] == ["on-failure"]
    assert set(environment(unit)) <= SETTING_NAMES, unit.name
    # The sensor data directory is the only path outside the unit's own state it may write.
    database = environment(unit).get("PIPELINE_DB") or exec_start(unit)[2]
    assert found["ReadWritePaths"] == [os.path.dirname(database)], unit.name
    (state,) = found["StateDirectory"]
    # Secrets arrive as credentials (readable by this service only), never inline.
    credentials = dict(item.split(":", 1) for item in found["LoadCredential"])
    for name in ("PIPELINE_SECRET_KEY", "PIPELINE_WEBHOOK_SECRET", "PIPELINE_WEBHOOKS"):
        assert name not in environment(unit), name
    for setting, value in environment(unit).items():
        if setting.endswith("_SECRET_FILE") or setting == "PIPELINE_SECRET_KEY_FILE":
            assert value.startswith("%d/") and value[3:] in credentials, setting
    assert state and all(path.startswith("/etc/pipeline-manager/") for path in credentials.values())


def test_the_dashboard_unit_runs_the_image_command():
    command = exec_start(DASHBOARD)
    assert command[0].endswith("/.venv/bin/python")
    assert command[1:] == list(GUNICORN_ARGS)
    (workdir,) = directives(DASHBOARD)["WorkingDirectory"]
    assert command[0] == f"{workdir}/.venv/bin/python"  # gunicorn.conf.py is found there
    (stop,) = directives(DASHBOARD)["TimeoutStopSec"]
    assert int(stop) > 20  # PIPELINE_GRACEFUL_TIMEOUT's default: requests may finish


@pytest.mark.slow
def test_the_dashboard_with_the_units_environment_is_ready(tmp_path):
    """gunicorn started as the unit starts it (its environment, paths made local) answers
    /readyz 200, reading the key from the credential and the users file in place."""
    env = environment(DASHBOARD)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "secret_key").write_text(LIVE_SECRET_KEY + "\n")
    # systemd hands credentials over readable by the service only (0400 in its own directory).
    (credentials / "secret_key").chmod(0o400)
    db_path = make_sensor_db(tmp_path / "sensor_data.db")
    local = {
        **env,
        "PIPELINE_SECRET_KEY": "",  # only the file: as the unit gives it
        "PIPELINE_SECRET_KEY_FILE": env["PIPELINE_SECRET_KEY_FILE"].replace("%d", str(credentials)),
        "PIPELINE_USERS_FILE": str(write_users_file(tmp_path / "users.htpasswd")),
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
    }
    (tmp_path / "state").mkdir()
    local = {k: v for k, v in local.items() if k not in ("PIPELINE_BIND", "PIPELINE_DB")}
    with LiveServer(db_path, env=local) as live:  # its own port and the local database
        status, _, body = request(live.url + "/readyz")
    assert status == 200, body + live.log()
    assert "pipeline_config" in body


def test_the_notify_unit_command_runs_through_the_real_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from webapp.cli.pipeline import main

    command = exec_start(NOTIFY)
    assert command[0].endswith("/.venv/bin/pipeline-manager")
    args = command[1:]
    db_path = make_sensor_db(tmp_path / "sensor_data.db")
    args[args.index("--db") + 1] = str(db_path)
    state = args[args.index("--state") + 1]
    assert state.startswith(f"/var/lib/{directives(NOTIFY)['StateDirectory'][0]}/")
    args[args.index("--state") + 1] = str(tmp_path / "state.json")
    notify = main.get_command(click.Context(main), "notify")
    seen = {}
    monkeypatch.setattr(notify, "callback", lambda **params: seen.update(params))
    result = CliRunner().invoke(main, args, prog_name="pipeline-manager", env={})
    assert result.exit_code == 0, result.output
    assert seen["metrics_port"] == 9101
