"""What the image, compose file, manifests and README promise: every command they write runs.

Each ``flask ... pipeline ...`` / ``flask ... user ...`` command found in the Dockerfile, the
compose file, deploy/ and README.md runs through the real click group on a temporary database.
"""

import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_sensor_db
from live import GUNICORN_ARGS, ROOT

from webapp import create_app
from webapp.config import SETTINGS, load_settings
from webapp.errors import InvalidInput

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
MANIFESTS = sorted((ROOT / "deploy").glob("*/*.yaml"))
IMAGE_COMMAND = ["python", *GUNICORN_ARGS]
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "(", ")"}
FLASK_OPTIONS_WITH_VALUE = {"--app", "-A", "--env-file", "-e"}
KNOWN_ENV = {setting.env for setting in SETTINGS} | {"WEB_CONCURRENCY"}


# -- finding commands ----------------------------------------------------------------------------


def flask_commands_in_text(text):
    """Yield the argument lists (after ``flask`` and its own options) of our CLI's commands."""
    text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s/`\"'])flask\s", line):
            lexer = shlex.shlex(line[match.end() :], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#`"
            tokens = []
            for token in lexer:
                if token in SHELL_OPERATORS:
                    break
                tokens.append(token)
            args = strip_flask_options(tokens)
            if args and args[0] in ("pipeline", "user") and not is_synopsis(args):
                yield args


def strip_flask_options(tokens):
    args = list(tokens)
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in FLASK_OPTIONS_WITH_VALUE and args:
            args.pop(0)
    return args


def is_synopsis(args):
    """A usage line (``set TYPE [--by NAME]``), not a command to run."""
    return any(re.fullmatch(r"[A-Z_]+|[\[{<].*", arg) for arg in args)


def readme_code():
    """Fenced blocks and inline code spans of README.md."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", prose))


def comments(text):
    return "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)


def yaml_commands(document):
    """Yield every container command (Kubernetes) and task entrypoint + parameters (Bacalhau)."""
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
    """Return (where, args) for every command of our CLI written in the deployment files."""
    found = []
    sources = [
        ("README.md", readme_code()),
        ("Dockerfile", DOCKERFILE.read_text()),
        ("docker-compose.yml", comments(COMPOSE.read_text())),
    ]
    sources += [
        (path.relative_to(ROOT).as_posix(), comments(path.read_text())) for path in MANIFESTS
    ]
    for where, text in sources:
        found += [(where, args) for args in flask_commands_in_text(text)]
    for path in [COMPOSE, *MANIFESTS]:
        for document in load_yaml(path):
            for command in yaml_commands(document):
                if command and command[0] == "flask":
                    args = strip_flask_options(command[1:])
                    found.append((path.relative_to(ROOT).as_posix(), args))
    return found


COMMANDS = all_commands()


def test_the_files_hold_the_commands_we_expect():
    wheres = {where for where, _ in COMMANDS}
    assert {"README.md", "Dockerfile", "docker-compose.yml"} <= wheres
    assert "deploy/kubernetes/job-set-pipeline.yaml" in wheres
    assert {"deploy/bacalhau/set-pipeline.yaml", "deploy/bacalhau/get-pipeline.yaml"} <= wheres
    assert sum(where == "README.md" for where in wheres) >= 1
    assert len([1 for where, _ in COMMANDS if where == "README.md"]) >= 4


# -- running them --------------------------------------------------------------------------------


def localize(args, db_path, users_file):
    """Point paths of the production layout (/data, /run/secrets...) at temporary files."""
    args = list(args)
    for index, arg in enumerate(args[:-1]):
        if arg == "--db":
            args[index + 1] = str(db_path)
        elif arg == "--users-file":
            args[index + 1] = str(users_file)
    return args


@pytest.mark.parametrize(
    ("where", "args"), COMMANDS, ids=[f"{w}:{' '.join(a)}"[:90] for w, a in COMMANDS]
)
def test_command_is_a_valid_invocation(where, args, tmp_path, monkeypatch):
    for name in ("PIPELINE_DB", "PIPELINE_USERS_FILE", "PIPELINE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    db_path = make_sensor_db(tmp_path / "sensor_data.db")
    users_file = tmp_path / "users.htpasswd"
    args = localize(args, db_path, users_file)
    if args[:1] == ["pipeline"] and "monitor" in args:
        run_monitor(args, db_path)
        return
    app = create_app(
        {"TESTING": True, "DB": str(db_path), "SECRET_KEY": "k", "USERS_FILE": str(users_file)}
    )
    password_input = "s3cret-Passw0rd\n" * (1 if "--password-stdin" in args else 2)
    result = app.test_cli_runner().invoke(args=args, input=password_input)
    if "--expect-id" in args and result.exit_code == 3:
        assert "changed since" in result.output  # compare-and-set: the documented refusal
        return
    assert result.exit_code == 0, f"{where}: {' '.join(args)}\n{result.output}"
    if "--json" in args:
        record = json.loads(result.stdout)  # stderr holds the audit line
        assert record["pipeline_type"] in ("raw", "schematized", "filtered", "aggregated")


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
    (user,) = instruction("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert instruction("EXPOSE") == ["8000"]
    assert not instruction("ENTRYPOINT"), "an ENTRYPOINT would prefix `docker run IMAGE flask ...`"
    env = " ".join(instruction("ENV"))
    assert "FLASK_APP=webapp" in env
    assert set(re.findall(r"\b(PIPELINE_\w+)=", env)) <= KNOWN_ENV
    assert "PIPELINE_DB=/data/sensor_data.db" in env  # inside the VOLUME compose mounts
    assert any("-c constraints.txt" in run for run in instruction("RUN"))


def test_dockerfile_command_is_the_live_server_command():
    (command,) = instruction("CMD")
    assert json.loads(command) == IMAGE_COMMAND


def test_dockerfile_healthcheck_asks_healthz_with_python():
    (check,) = instruction("HEALTHCHECK")
    assert "CMD python -c" in check and "/healthz" in check and "curl" not in check


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


# -- compose and manifests -------------------------------------------------------------------------


def compose_service():
    (document,) = load_yaml(COMPOSE)
    return document, document["services"]["pipeline-manager"]


def test_compose_mounts_the_data_directory_and_secrets():
    document, service = compose_service()
    environment = service["environment"]
    assert set(environment) <= KNOWN_ENV
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


def kubernetes(kind):
    documents = [doc for path in MANIFESTS for doc in load_yaml(path) if doc.get("kind") == kind]
    assert documents, kind
    return documents


def test_kubernetes_deployment_probes_and_command():
    (deployment,) = kubernetes("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == IMAGE_COMMAND
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = container["ports"][0]
    assert port["containerPort"] == 8000
    assert container["livenessProbe"]["httpGet"]["port"] in (port["name"], 8000)
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert set(env) <= KNOWN_ENV
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert os.path.dirname(env["PIPELINE_DB"]) in mounts
    (service,) = kubernetes("Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_kubernetes_job_sets_the_pipeline_once():
    (job,) = kubernetes("Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["command"][:4] == ["flask", "--app", "webapp", "pipeline"]
    assert "set" in container["command"]


def test_bacalhau_jobs_run_on_every_labelled_node_and_print_json():
    specs = {path.name: load_yaml(path)[0] for path in MANIFESTS if path.parent.name == "bacalhau"}
    assert set(specs) == {"set-pipeline.yaml", "get-pipeline.yaml"}
    for name, spec in specs.items():
        assert spec["Type"] == "ops", name  # ops: every matching node, not one
        assert spec["Constraints"], name
        (task,) = spec["Tasks"]
        (command,) = yaml_commands(task)
        assert command[-1] == "--json" and command[:4] == ["flask", "--app", "webapp", "pipeline"]
        db = command[command.index("--db") + 1]
        assert {source["Target"] for source in task["InputSources"]} == {os.path.dirname(db)}


# -- gunicorn.conf.py and secret files -------------------------------------------------------------


def test_gunicorn_conf_reads_the_environment(monkeypatch):
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
