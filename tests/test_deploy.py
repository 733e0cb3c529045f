"""What the image, compose file, manifests and README promise: every command they write runs.

Each ``flask ... pipeline ...`` / ``flask ... user ...`` command found in the Dockerfile, the
compose file, deploy/ (manifests and deploy/README.md) and README.md runs through the real click
group on a temporary database; so does each ``pipeline-manager ...`` command, through the console
script's ``webapp.cli.pipeline:main``. The linters themselves run in tests/test_manifests.py.
"""

import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from conftest import make_sensor_db
from live import GUNICORN_ARGS, LIVE_SECRET_KEY, ROOT, LiveServer

from webapp import create_app
from webapp.accounts.users import hash_password
from webapp.core.config import SETTINGS, load_settings
from webapp.core.errors import InvalidInput

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY_README = ROOT / "deploy" / "README.md"
MANIFESTS = sorted((ROOT / "deploy").glob("*/*.yaml"))
IMAGE_COMMAND = ["python", *GUNICORN_ARGS]
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "(", ")"}
FLASK_OPTIONS_WITH_VALUE = {"--app", "-A", "--env-file", "-e"}
MANAGER = "pipeline-manager"  # the console script: `flask --app webapp pipeline` as one command
# Its subcommands: the `pipeline` group's, and the notifier (being built alongside).
MANAGER_SUBCOMMANDS = {"get", "set", "history", "monitor", "notify"}
LONG_RUNNING = {"monitor", "notify"}  # they run until stopped
NOTIFY_COMMAND = [
    MANAGER,
    "--db",
    "/data/sensor_data.db",
    "notify",
    "--state",
    "/data/pipeline-notify-state.json",
    "--metrics-port",
    "9101",
]
PENDING_SETTINGS: set[str] = set()  # names used by manifests before a setting declares them
KNOWN_ENV = {setting.env for setting in SETTINGS} | {"WEB_CONCURRENCY"} | PENDING_SETTINGS
APP_UID = APP_GID = 10001


# -- finding commands ----------------------------------------------------------------------------


def shell_words(rest):
    """Split a shell command line up to its first operator (pipe, ``&&``, redirection...)."""
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#`"
    words = []
    for token in lexer:
        if token in SHELL_OPERATORS:
            break
        words.append(token)
    return words


def commands_in_text(text):
    """Yield ``(program, args)`` for each command of our CLI in ``text``.

    ``program`` is ``flask`` (``args`` after flask's own options: ``pipeline ...``, ``user ...``)
    or ``pipeline-manager`` (``args`` after it: ``--db PATH get``). A ``pipeline-manager`` that
    is not followed by ``--db`` or a subcommand names something else (the compose service, a
    Kubernetes object) and is skipped.
    """
    text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s/`\"'])flask\s", line):
            args = strip_flask_options(shell_words(line[match.end() :]))
            if args and args[0] in ("pipeline", "user") and not is_synopsis(args):
                yield "flask", args
        # Lookarounds: `pipeline-manager pipeline-manager get` (service, then command) finds both.
        for match in re.finditer(rf"(?:^|(?<=[\s`\"'])|(?<=bin/)){MANAGER}(?=\s)", line):
            args = shell_words(line[match.end() :])
            if args and is_manager_invocation(args) and not is_synopsis(args):
                yield MANAGER, args


def strip_flask_options(tokens):
    args = list(tokens)
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in FLASK_OPTIONS_WITH_VALUE and args:
            args.pop(0)
    return args


def is_manager_invocation(args):
    return args[0] in MANAGER_SUBCOMMANDS or args[0] == "--db" or args[0].startswith("--db=")


def is_synopsis(args):
    """A usage line (``set TYPE [--by NAME]``), not a command to run."""
    return any(re.fullmatch(r"[A-Z_]+|[\[{<].*", arg) for arg in args)


def markdown_code(path):
    """Fenced blocks and inline code spans of a Markdown file."""
    text = path.read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", prose))


def comments(text):
    return "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)


def yaml_commands(document):
    """Yield every container command (Kubernetes, compose) and task entrypoint + parameters
    (Bacalhau)."""
    if isinstance(document, dict):
        if "command" in document and isinstance(document["command"], list):
            yield [*document["command"], *document.get("args", [])]
        params = document.get("Params") if document.get("Type") == "docker" else None
        if params:
            yield [*params.get("Entrypoint", []), *params.get("Parameters", [])]
        for value in document.values():
            yield from yaml_commands(value)
    elif isinstance(document, list):
        for value in document:
            yield from yaml_commands(value)


def load_yaml(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_commands():
    """Return (where, program, args) for every command of our CLI in the deployment files."""
    found = []
    sources = [
        ("README.md", markdown_code(ROOT / "README.md")),
        ("deploy/README.md", markdown_code(DEPLOY_README)),
        ("Dockerfile", DOCKERFILE.read_text()),
        ("docker-compose.yml", comments(COMPOSE.read_text())),
    ]
    sources += [
        (path.relative_to(ROOT).as_posix(), comments(path.read_text())) for path in MANIFESTS
    ]
    for where, text in sources:
        found += [(where, program, args) for program, args in commands_in_text(text)]
    for path in [COMPOSE, *MANIFESTS]:
        where = path.relative_to(ROOT).as_posix()
        for document in load_yaml(path):
            for command in yaml_commands(document):
                if command and command[0] == "flask":
                    found.append((where, "flask", strip_flask_options(command[1:])))
                elif command and command[0] == MANAGER:
                    found.append((where, MANAGER, command[1:]))
    return found


COMMANDS = all_commands()


def command_id(where, program, args):
    return f"{where}:{program} {' '.join(args)}"[:90]


def subcommand(program, args):
    """Return the pipeline subcommand (``set``, ``get``...) of a command, or None (``user``)."""
    rest = list(args)
    if program == "flask":
        if rest[:1] != ["pipeline"]:
            return None
        rest = rest[1:]
    while rest and rest[0].startswith("--db"):
        rest = rest[(1 if "=" in rest[0] else 2) :]
    return rest[0] if rest else None


def test_the_files_hold_the_commands_we_expect():
    flask_wheres = [where for where, program, _ in COMMANDS if program == "flask"]
    assert flask_wheres.count("README.md") >= 4
    manager_wheres = {where for where, program, _ in COMMANDS if program == MANAGER}
    assert {
        "Dockerfile",
        "docker-compose.yml",
        "deploy/README.md",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/job-set-pipeline.yaml",
        "deploy/bacalhau/set-pipeline.yaml",
        "deploy/bacalhau/get-pipeline.yaml",
    } <= manager_wheres


def test_the_finder_tells_commands_from_names():
    text = (
        "docker compose run --rm pipeline-manager pipeline-manager --db /data/x.db get --json\n"
        "kubectl exec deploy/pipeline-manager -c pipeline-manager -- pipeline-manager history\n"
        "kubectl create secret generic pipeline-manager --from-file=a=b\n"
        "pipeline-manager [--db PATH] COMMAND\n"
        "docker compose run --rm pipeline-manager flask pipeline get  # a comment\n"
    )
    assert list(commands_in_text(text)) == [
        (MANAGER, ["--db", "/data/x.db", "get", "--json"]),
        (MANAGER, ["history"]),
        ("flask", ["pipeline", "get"]),
    ]


SET_COMMANDS = [command for command in COMMANDS if subcommand(command[1], command[2]) == "set"]


@pytest.mark.parametrize(
    ("where", "program", "args"), SET_COMMANDS, ids=[command_id(*c) for c in SET_COMMANDS]
)
def test_every_set_example_gives_a_reason(where, program, args):
    assert "--reason" in args[:-1], f"{where}: {program} {' '.join(args)}"
    reason = args[args.index("--reason") + 1]
    assert reason.strip() and not reason.startswith("-"), f"{where}: empty --reason"


# -- running them --------------------------------------------------------------------------------


def localize(args, tmp_path, db_path, users_file):
    """Point paths of the production layout (/data, /run/secrets...) at temporary files."""
    args = list(args)
    for index, arg in enumerate(args[:-1]):
        if arg == "--db":
            args[index + 1] = str(db_path)
        elif arg == "--users-file":
            args[index + 1] = str(users_file)
        elif arg == "--state":
            args[index + 1] = str(tmp_path / Path(args[index + 1]).name)
    return args


@pytest.mark.parametrize(
    ("where", "program", "args"),
    COMMANDS,
    ids=[command_id(*command) for command in COMMANDS],
)
def test_command_is_a_valid_invocation(where, program, args, tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("PIPELINE_")]:
        monkeypatch.delenv(name)
    db_path = make_sensor_db(tmp_path / "sensor_data.db")
    users_file = tmp_path / "users.htpasswd"
    args = localize(args, tmp_path, db_path, users_file)
    if args[:2] in (["user", "list"], ["user", "remove"]):  # these read an existing file
        users_file.write_text(f"alice:{hash_password('example-password', rounds=4)}\n")
    if program == MANAGER:
        run_pipeline_manager(where, args, db_path, monkeypatch)
        return
    if args[:1] == ["pipeline"] and "monitor" in args:
        run_monitor(args, db_path)
        return
    if subcommand(program, args) == "notify":  # runs until stopped: parse it, run a no-op body
        command = pipeline_manager().get_command(click.Context(pipeline_manager()), "notify")
        monkeypatch.setattr(command, "callback", lambda **params: None)
    if args[:2] == ["user", "add"] and "--password-stdin" not in args:
        run_prompting_user_add(where, args, db_path)
        return
    app = create_app(
        {"TESTING": True, "DB": str(db_path), "SECRET_KEY": "k", "USERS_FILE": str(users_file)}
    )
    password_input = "s3cret-Passw0rd\n"
    result = app.test_cli_runner().invoke(args=args, input=password_input)
    check_result(where, args, result)


def run_prompting_user_add(where, args, db_path):
    """``user add`` asks for the password only on a terminal: give it a real one."""
    from ptylib import run_in_terminal
    from workers import clean_env

    command = [sys.executable, "-m", "flask", "--app", "webapp", *args, "--rounds", "4"]
    session = run_in_terminal(
        command, password="s3cret-Passw0rd", env=clean_env(PIPELINE_DB=db_path), cwd=ROOT
    )
    assert session.returncode == 0 and session.prompts == 2, f"{where}: {args}\n{session.output}"


def check_result(where, args, result):
    if "--expect-id" in args and result.exit_code == 3:
        assert "changed since" in result.output  # compare-and-set: the documented refusal
        return
    assert result.exit_code == 0, f"{where}: {' '.join(args)}\n{result.output}"
    if "--json" in args:
        record = json.loads(result.stdout)  # stderr holds the audit line
        assert record["pipeline_type"] in ("raw", "schematized", "filtered", "aggregated")


def pipeline_manager():
    """Return ``webapp.cli.pipeline:main``, the ``pipeline-manager`` console script."""
    from webapp.cli.pipeline import main

    assert isinstance(main, click.Group), (
        "webapp.cli.pipeline:main should be the click group it runs"
    )
    return main


def run_pipeline_manager(where, args, db_path, monkeypatch):
    """Run ``pipeline-manager ARGS`` through ``webapp.cli.pipeline:main`` as the image would.

    No secret key or users file: a Job or a Bacalhau task has neither. ``PIPELINE_DB`` is set, as
    the image's ``ENV`` sets it. A long-running command (``monitor``, ``notify``) is parsed and
    converted in full (group options, its own options, the group's callback) but its body is
    replaced by a no-op, so a wrong option or value still fails here.
    """
    main = pipeline_manager()
    monkeypatch.setenv("PIPELINE_DB", str(db_path))
    name = subcommand(MANAGER, args)
    if name in LONG_RUNNING:
        command = main.get_command(click.Context(main), name)
        assert command is not None, f"{where}: pipeline-manager has no `{name}` command"
        monkeypatch.setattr(command, "callback", lambda **params: None)
    result = CliRunner().invoke(main, args, prog_name=MANAGER)
    check_result(where, args, result)


def test_pipeline_manager_is_the_console_script():
    pipeline_manager()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {})
    assert scripts.get(MANAGER) == "webapp.cli.pipeline:main"


def run_monitor(args, db_path):
    """monitor runs until Ctrl+C: start it, wait for its first line, interrupt it (exit 0)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "webapp", *args],
        cwd=ROOT,
        env={**os.environ, "PIPELINE_DB": str(db_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith(("database:", "current:", "{")), first_line
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr


# -- the image -------------------------------------------------------------------------------------


def dockerfile_instructions():
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def instruction(name):
    return [value for key, value in dockerfile_instructions() if key == name]


def test_dockerfile_image_basics():
    (base,) = instruction("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim", base)
    assert instruction("EXPOSE") == ["8000"]
    assert not instruction("ENTRYPOINT"), "an ENTRYPOINT would prefix `docker run IMAGE flask ...`"
    env = " ".join(instruction("ENV"))
    assert "FLASK_APP=webapp" in env
    assert set(re.findall(r"\b(PIPELINE_\w+)=", env)) <= KNOWN_ENV
    assert "PIPELINE_DB=/data/sensor_data.db" in env  # inside the VOLUME compose mounts
    assert any("-c constraints.txt" in run for run in instruction("RUN"))


def test_the_image_runs_as_uid_and_gid_10001():
    (user,) = instruction("USER")
    assert user == f"{APP_UID}:{APP_GID}"
    run = " && ".join(instruction("RUN"))
    steps = [step.strip() for step in run.split("&&")]
    (groupadd,) = [step for step in steps if step.startswith("groupadd ")]
    (useradd,) = [step for step in steps if step.startswith("useradd ")]
    assert f"--gid {APP_GID}" in groupadd
    assert f"--uid {APP_UID}" in useradd and f"--gid {APP_GID}" in useradd
    assert "--user-group" not in useradd  # it would create a group with a gid of its own choosing
    # The image's /data (copied into a new named volume) and instance/ belong to 10001:10001.
    assert any(re.fullmatch(rf"chown {APP_UID}:{APP_GID} .*\B/data\b.*", step) for step in steps)


def test_dockerfile_command_is_the_live_server_command():
    (command,) = instruction("CMD")
    assert json.loads(command) == IMAGE_COMMAND


def healthcheck_command():
    """The HEALTHCHECK's command: a JSON array (exec form), so no shell runs it."""
    (check,) = instruction("HEALTHCHECK")
    options, command = check.split("CMD", 1)
    assert all(option.startswith("--") for option in options.split())
    return json.loads(command)


def test_dockerfile_healthcheck_asks_healthz_with_python_in_exec_form():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"] and len(command) == 3
    assert "/healthz" in command[2] and "curl" not in command[2]


@pytest.mark.slow
def test_the_image_healthcheck_passes_only_while_the_server_answers(db_path):
    command = healthcheck_command()
    with LiveServer(db_path, workers=1) as server:
        env = {**os.environ, "PIPELINE_BIND": f"0.0.0.0:{server.port}"}
        healthy = subprocess.run(
            [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30
        )
        assert healthy.returncode == 0, healthy.stderr
    unhealthy = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30
    )
    assert unhealthy.returncode != 0


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    sources = []
    for value in instruction("COPY"):
        sources += value.split()[:-1]
    for required in ("constraints.txt", "gunicorn.conf.py", "webapp/", "templates/", "static/"):
        assert required in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") not in ignored, source


# -- compose ---------------------------------------------------------------------------------------


def compose_service(name="pipeline-manager"):
    (document,) = load_yaml(COMPOSE)
    return document, document["services"][name]


def test_compose_mounts_the_data_directory_and_secrets():
    document, service = compose_service()
    environment = service["environment"]
    mounts = dict(volume.rsplit(":", 1) for volume in service["volumes"])
    targets = {target: source for source, target in mounts.items()}
    db_dir = os.path.dirname(environment["PIPELINE_DB"])
    assert db_dir in targets, "mount the directory holding the database (WAL: -wal, -shm)"
    assert not targets[db_dir].endswith(".db")
    for setting in ("PIPELINE_SECRET_KEY_FILE", "PIPELINE_USERS_FILE"):
        name = Path(environment[setting]).name
        assert environment[setting] == f"/run/secrets/{name}"
        assert name in service["secrets"] and name in document["secrets"]
    assert "PIPELINE_SECRET_KEY" not in environment  # never a secret in the file itself
    assert any(str(port).endswith(":8000") for port in service["ports"])
    assert service.get("command", IMAGE_COMMAND) == IMAGE_COMMAND
    assert "entrypoint" not in service


def test_compose_environment_names_are_declared_settings():
    (document,) = load_yaml(COMPOSE)
    for name, service in document["services"].items():
        if name in THIRD_PARTY_SERVICES:
            continue
        assert set(service.get("environment", {})) <= KNOWN_ENV, name


def test_compose_trusts_no_proxy_while_the_port_is_published_to_everyone():
    _, service = compose_service()
    published_to_all = any(not str(port).startswith("127.0.0.1:") for port in service["ports"])
    proxies = service["environment"]["PIPELINE_PROXY_COUNT"]
    assert proxies == ("0" if published_to_all else "1")


#: Services of another image (PostgreSQL's entrypoint needs its own user switch and capabilities).
THIRD_PARTY_SERVICES = {"fleet-db"}


def test_compose_services_are_locked_down():
    (document,) = load_yaml(COMPOSE)
    for name, service in document["services"].items():
        if name in THIRD_PARTY_SERVICES:
            assert service["profiles"] == ["fleet"], name  # never started with the node's services
            continue
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_compose_notify_service():
    document, dashboard = compose_service()
    _, notify = compose_service("notify")
    assert notify["command"] == NOTIFY_COMMAND
    assert notify["image"] == dashboard["image"]
    for key in ("user", "read_only", "cap_drop", "security_opt"):  # the dashboard's restrictions
        assert notify.get(key) == dashboard.get(key), key
    assert "ports" not in notify  # metrics for the compose network only
    assert [str(port) for port in notify["expose"]] == ["9101"]
    assert "entrypoint" not in notify
    # The state file sits on the data volume, beside the database.
    (data_mount,) = [volume for volume in notify["volumes"] if volume.endswith(":/data")]
    assert data_mount in dashboard["volumes"]
    state = NOTIFY_COMMAND[NOTIFY_COMMAND.index("--state") + 1]
    assert os.path.dirname(state) == "/data"
    environment = notify["environment"]
    assert "PIPELINE_WEBHOOKS" in environment
    assert "PIPELINE_WEBHOOK_SECRET" not in environment  # the key comes from a secret file
    secret_file = environment["PIPELINE_WEBHOOK_SECRET_FILE"]
    name = Path(secret_file).name
    assert secret_file == f"/run/secrets/{name}"
    assert notify["secrets"] == [name] and name in document["secrets"]
    # The image's HEALTHCHECK asks the dashboard's port: the notifier's own asks its metrics port.
    check = notify["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"] and "127.0.0.1:9101/healthz" in check[3]
    assert str(notify["expose"][0]) == NOTIFY_COMMAND[NOTIFY_COMMAND.index("--metrics-port") + 1]


# -- Kubernetes ------------------------------------------------------------------------------------


def kubernetes(kind):
    documents = [doc for path in MANIFESTS for doc in load_yaml(path) if doc.get("kind") == kind]
    assert documents, kind
    return documents


def pod_specs():
    for kind in ("Deployment", "Job"):
        for document in kubernetes(kind):
            yield document["metadata"]["name"], document["spec"]["template"]["spec"]


def container(pod_spec, name):
    (found,) = [item for item in pod_spec["containers"] if item["name"] == name]
    return found


def deployment_pod(name="pipeline-manager"):
    (deployment,) = [item for item in kubernetes("Deployment") if item["metadata"]["name"] == name]
    return deployment, deployment["spec"]["template"]["spec"]


def test_kubernetes_deployment_probes_and_command():
    deployment, pod = deployment_pod()
    dashboard = container(pod, "pipeline-manager")
    assert dashboard["command"] == IMAGE_COMMAND
    assert dashboard["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert dashboard["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = dashboard["ports"][0]
    assert port["containerPort"] == 8000
    assert dashboard["livenessProbe"]["httpGet"]["port"] in (port["name"], 8000)
    env = {item["name"]: item.get("value") for item in dashboard["env"]}
    mounts = {mount["mountPath"] for mount in dashboard["volumeMounts"]}
    assert os.path.dirname(env["PIPELINE_DB"]) in mounts
    (service,) = [s for s in kubernetes("Service") if s["metadata"]["name"] == "pipeline-manager"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_kubernetes_environment_names_are_declared_settings():
    for pod_name, pod in pod_specs():
        for item in pod["containers"]:
            names = {variable["name"] for variable in item.get("env", [])}
            assert names <= KNOWN_ENV, f"{pod_name}/{item['name']}: {names - KNOWN_ENV}"


def test_kubernetes_pods_run_as_10001_locked_down():
    for pod_name, pod in pod_specs():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, pod_name
        assert (context["runAsUser"], context["runAsGroup"]) == (APP_UID, APP_GID), pod_name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        assert pod["automountServiceAccountToken"] is False, pod_name
        for item in pod["containers"]:
            assert item["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, f"{pod_name}/{item['name']}"


def test_kubernetes_secret_files_are_readable_by_the_container_user_only():
    _, pod = deployment_pod()
    assert pod["securityContext"]["fsGroup"] == APP_GID  # secret files get this group
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    dashboard = container(pod, "pipeline-manager")
    env = {item["name"]: item.get("value") for item in dashboard["env"]}
    (mount,) = [mount for mount in dashboard["volumeMounts"] if mount["name"] == "secrets"]
    secret = volumes["secrets"]["secret"]
    files = {
        item["path"]: item.get("mode", secret.get("defaultMode", 0o644)) for item in secret["items"]
    }
    for setting in ("PIPELINE_SECRET_KEY_FILE", "PIPELINE_USERS_FILE"):
        directory, name = os.path.split(env[setting])
        assert directory == mount["mountPath"] and name in files, setting
        mode = files[name]
        # Group-readable (group 10001), nobody else, no write bit: 0440.
        assert mode & 0o040 and not mode & 0o007 and not mode & 0o222, f"{name}: {mode:o}"
    assert set(files) == {"secret_key", "users.htpasswd"}  # only what the dashboard reads


def test_kubernetes_dashboard_trusts_the_one_proxy_in_front():
    _, pod = deployment_pod()
    env = {item["name"]: item.get("value") for item in container(pod, "pipeline-manager")["env"]}
    assert env["PIPELINE_PROXY_COUNT"] == "1"  # the Ingress controller in front of the Service


def test_kubernetes_notify_sidecar():
    _, pod = deployment_pod()
    dashboard = container(pod, "pipeline-manager")
    notify = container(pod, "notify")
    assert notify["command"] == NOTIFY_COMMAND and "args" not in notify
    assert notify["image"] == dashboard["image"]
    assert notify["securityContext"] == dashboard["securityContext"]
    assert notify["ports"] == [{"name": "notify-metrics", "containerPort": 9101}]
    (service,) = [s for s in kubernetes("Service") if s["metadata"]["name"] == "pipeline-manager"]
    targets = {port["targetPort"] for port in service["spec"]["ports"]}
    assert not targets & {"notify-metrics", 9101}  # metrics inside the pod network only
    env = {item["name"]: item for item in notify["env"]}
    fleet = {"PIPELINE_FLEET_URL", "PIPELINE_FLEET_KEY", "PIPELINE_NODE_LABELS"}
    assert set(env) == {"PIPELINE_WEBHOOKS", "PIPELINE_WEBHOOK_SECRET", "PIPELINE_NODE"} | fleet
    assert env.pop("PIPELINE_NODE")["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName"}
    for name, item in env.items():
        assert "value" not in item, name  # from the Secret, never written here
        reference = item["valueFrom"]["secretKeyRef"]
        assert reference["optional"] is True and reference["name"] != "pipeline-manager", name
    mounts = {mount["mountPath"]: mount["name"] for mount in notify["volumeMounts"]}
    dashboard_mounts = {mount["mountPath"]: mount["name"] for mount in dashboard["volumeMounts"]}
    assert mounts["/data"] == dashboard_mounts["/data"]  # the database and the state file
    assert "secrets" not in mounts.values()  # the dashboard's secret key and users stay its own
    assert notify["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "notify-metrics"}


def exit_code_action(rules, container_name, exit_code):
    """What a Job's podFailurePolicy does with a container's exit code (first rule that matches)."""
    for rule in rules:
        on_exit = rule.get("onExitCodes")
        if not on_exit or on_exit.get("containerName", container_name) != container_name:
            continue
        listed = exit_code in on_exit["values"]
        if listed == (on_exit["operator"] == "In"):
            return rule["action"]
    return "Count"  # no rule: the failure counts toward backoffLimit


def test_kubernetes_job_sets_the_pipeline_and_retries_only_a_busy_database():
    (job,) = kubernetes("Job")
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    (set_container,) = pod["containers"]
    assert set_container["command"][0] == MANAGER
    assert subcommand(MANAGER, set_container["command"][1:]) == "set"
    rules = spec["podFailurePolicy"]["rules"]
    # The schema knows no enums: check the names Kubernetes accepts.
    for rule in rules:
        assert rule["action"] in {"FailJob", "FailIndex", "Ignore", "Count"}, rule
        if "onExitCodes" in rule:
            assert rule["onExitCodes"]["operator"] in {"In", "NotIn"}, rule
            assert rule["onExitCodes"]["containerName"] == set_container["name"], rule
    for exit_code in range(1, 256):
        expected = "Count" if exit_code == 4 else "FailJob"
        assert exit_code_action(rules, set_container["name"], exit_code) == expected, exit_code
    assert 1 <= spec["backoffLimit"] <= 10  # a few retries of exit 4, not forever


# -- Bacalhau --------------------------------------------------------------------------------------


def test_bacalhau_jobs_run_on_every_labelled_node_and_print_json():
    specs = {path.name: load_yaml(path)[0] for path in MANIFESTS if path.parent.name == "bacalhau"}
    assert set(specs) == {"set-pipeline.yaml", "get-pipeline.yaml", "fleet-notify.yaml"}
    specs.pop("fleet-notify.yaml")  # a daemon, not a one-off: tested below
    for name, spec in specs.items():
        assert spec["Type"] == "ops", name  # ops: every matching node, not one
        assert spec["Constraints"], name
        (task,) = spec["Tasks"]
        assert task["Engine"]["Params"]["Entrypoint"] == [MANAGER], name
        (command,) = yaml_commands(task)
        assert command[-1] == "--json", name
        db = command[command.index("--db") + 1]
        assert {source["Target"] for source in task["InputSources"]} == {os.path.dirname(db)}
        for source in task["InputSources"]:
            assert source["Source"]["Type"] == "local", name  # not the deprecated localDirectory
            params = source["Source"]["Params"]
            assert set(params) <= {"SourcePath", "ReadWrite", "CreateAs"}, name
            assert params["ReadWrite"] is True, name  # WAL: even a read needs -shm writable
        assert task["Network"] == {"Type": "None"}, name


# -- gunicorn.conf.py and secret files -------------------------------------------------------------


def test_gunicorn_conf_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PIPELINE_SECRET_KEY", LIVE_SECRET_KEY)  # the conf refuses to start without
    monkeypatch.setenv("PIPELINE_BIND", "127.0.0.1:9123")
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("PIPELINE_GRACEFUL_TIMEOUT", "7")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["bind"] == "127.0.0.1:9123"
    assert conf["workers"] == 5
    assert conf["graceful_timeout"] == 7
    assert conf["accesslog"] == "-" and conf["errorlog"] == "-"
    assert conf["preload_app"] is False


def test_secret_key_file_is_read_when_no_key_is_given(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text("from-a-file\n")
    settings = load_settings({"PIPELINE_SECRET_KEY_FILE": str(secret)})
    assert settings["SECRET_KEY"] == "from-a-file"
    both = {"PIPELINE_SECRET_KEY": "direct", "PIPELINE_SECRET_KEY_FILE": str(secret)}
    assert load_settings(both)["SECRET_KEY"] == "direct"


@pytest.mark.parametrize("content", [None, "  \n"], ids=["missing", "empty"])
def test_an_unreadable_or_empty_secret_key_file_is_refused(tmp_path, content):
    secret = tmp_path / "secret_key"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(InvalidInput, match="PIPELINE_SECRET_KEY_FILE"):
        load_settings({"PIPELINE_SECRET_KEY_FILE": str(secret)})


def test_a_bad_secret_key_file_is_one_error_line_under_the_cli(db_path, tmp_path):
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")},
        "PIPELINE_DB": str(db_path),
        "PIPELINE_SECRET_KEY_FILE": str(tmp_path / "missing"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", "pipeline", "get"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: PIPELINE_SECRET_KEY_FILE: cannot read {tmp_path / 'missing'} "
        "(No such file or directory)"
    ]


def test_compose_fleet_profile_runs_the_centre_as_the_image_runs_the_dashboard():
    (document,) = load_yaml(COMPOSE)
    fleet, database = document["services"]["fleet"], document["services"]["fleet-db"]
    assert fleet["profiles"] == ["fleet"] and database["profiles"] == ["fleet"]
    assert fleet["command"] == [*IMAGE_COMMAND[:-1], "webapp.fleet:create_app()"]
    assert fleet["image"] == compose_service()[1]["image"]
    environment = fleet["environment"]
    # Secrets as files, never inline: the store's URL holds a password.
    assert "PIPELINE_FLEET_DB" not in environment and "PIPELINE_FLEET_SECRET" not in environment
    for setting in ("PIPELINE_FLEET_DB_FILE", "PIPELINE_FLEET_SECRET_FILE"):
        secret = environment[setting].removeprefix("/run/secrets/")
        assert secret in fleet["secrets"] and secret in document["secrets"], setting
    assert fleet["depends_on"]["fleet-db"]["condition"] == "service_healthy"


def test_kubernetes_fleet_centre_runs_the_centre_with_its_secrets_as_files():
    deployment, pod = deployment_pod("pipeline-fleet")
    centre = container(pod, "pipeline-fleet")
    assert centre["command"] == [*IMAGE_COMMAND[:-1], "webapp.fleet:create_app()"]
    assert centre["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {item["name"]: item.get("value") for item in centre["env"]}
    assert "PIPELINE_FLEET_DB" not in env and "PIPELINE_FLEET_SECRET" not in env  # files only
    mounts = {mount["name"]: mount["mountPath"] for mount in centre["volumeMounts"]}
    for setting in ("PIPELINE_FLEET_DB_FILE", "PIPELINE_FLEET_SECRET_FILE"):
        assert env[setting].startswith(mounts["secrets"] + "/"), setting
    (service,) = [s for s in kubernetes("Service") if s["metadata"]["name"] == "pipeline-fleet"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_bacalhau_fleet_notifier_runs_on_every_labelled_node_with_its_key_from_a_file():
    (spec,) = load_yaml(ROOT / "deploy" / "bacalhau" / "fleet-notify.yaml")
    assert spec["Type"] == "daemon" and spec["Constraints"]
    (task,) = spec["Tasks"]
    (command,) = yaml_commands(task)
    assert command[command.index("notify") :][:1] == ["notify"] and "--fleet" in command
    env = dict(item.split("=", 1) for item in task["Engine"]["Params"]["EnvironmentVariables"])
    assert set(env) == {"PIPELINE_FLEET_KEY_FILE"}  # the key itself is never in the spec
    sources = {source["Target"]: source["Source"]["Params"] for source in task["InputSources"]}
    assert env["PIPELINE_FLEET_KEY_FILE"].startswith("/secrets/")
    assert sources["/secrets"]["ReadWrite"] is False and sources["/data"]["ReadWrite"] is True
