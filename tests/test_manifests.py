"""The deployment files pass the linters operators use, run exactly as an operator would.

- ``hadolint --config .hadolint.yaml Dockerfile``
- ``kubernetes-validate --strict`` on every file in deploy/kubernetes/
- ``check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml``: the compose-spec
  schema that ships inside check-jsonschema (pinned in constraints.txt), never a download.

The three come from the ``test`` extra. Each linter must also reject a deliberately broken copy,
so a linter that passes everything (wrong file, lax flags, a config that ignores all) fails here.
Schemas catch structure, not meaning (kubernetes-validate knows no enums): tests/test_deploy.py
checks what the manifests mean.
"""

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml
from live import ROOT

SCRIPTS = Path(sysconfig.get_path("scripts"))  # the venv's bin/, which need not be on PATH
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
KUBERNETES = sorted(path for path in (ROOT / "deploy" / "kubernetes").iterdir() if path.is_file())
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = "vendor.compose-spec"

# Any download a linter tried would fail at once (a closed loopback port as the proxy): the tests
# prove they need no network. HADOLINT_* variables could relax hadolint, so they are dropped.
_NO_NETWORK = "http://127.0.0.1:9"
ENV = {
    **{
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HADOLINT_") and key.lower() != "no_proxy"
    },
    **{name: _NO_NETWORK for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
}


def lint(tool, *args):
    """Run one of the test extra's linters from this venv; return the completed process."""
    executable = SCRIPTS / tool
    assert executable.exists(), f"{executable} missing: install the test extra (-e '.[test]')"
    return subprocess.run(
        [str(executable), *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(result):
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def broken_copy(tmp_path, path, old, new):
    """Write ``path`` to ``tmp_path`` with ``old`` replaced by ``new`` (which must be there)."""
    text = path.read_text()
    assert old in text, f"{old!r} is no longer in {path.name}: update this negative check"
    copy = tmp_path / path.name
    copy.write_text(text.replace(old, new, 1))
    return copy


def broken_yaml(tmp_path, path, change):
    """Write ``path``'s documents to ``tmp_path`` after ``change(documents)`` has edited them."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    change(documents)
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return copy


# -- Dockerfile: hadolint ----------------------------------------------------------------------


def hadolint(path):
    return lint("hadolint", "--config", HADOLINT_CONFIG, "--no-color", path)


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, report(result)


def test_hadolint_config_ignores_no_rule_without_a_reason():
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    assert config["failure-threshold"] == "style"  # every finding fails, style included
    assert config["disable-ignore-pragma"] is True  # no silent `# hadolint ignore=` in the file
    ignored = config.get("ignored") or []
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in ignored:  # each ignored rule sits on its own line with a `# reason`
        assert any(line.strip().startswith(f"- {rule}") and "#" in line for line in lines), rule


BROKEN_DOCKERFILES = {
    # (text in the Dockerfile, its broken replacement, the rule hadolint must report)
    "healthcheck-in-shell-form": (
        'CMD ["python", "-c", "import os',
        'CMD python -c "import os',
        "DL3025",
    ),
    "root-as-last-user": ("USER 10001:10001", "USER root", "DL3002"),
    "ignore-pragma-not-honoured": (
        "USER 10001:10001",
        "# hadolint ignore=DL3002\nUSER root",
        "DL3002",
    ),
    "untrusted-registry": ("FROM python:", "FROM quay.io/someone/python:", "DL3026"),
}


@pytest.mark.parametrize("case", BROKEN_DOCKERFILES)
def test_hadolint_rejects_a_broken_dockerfile(case, tmp_path):
    old, new, rule = BROKEN_DOCKERFILES[case]
    result = hadolint(broken_copy(tmp_path, DOCKERFILE, old, new))
    assert result.returncode != 0, report(result)
    assert rule in result.stdout, report(result)


# -- Kubernetes: kubernetes-validate --strict --------------------------------------------------


def kubernetes_validate(path):
    return lint("kubernetes-validate", "--strict", path)


def test_the_kubernetes_directory_holds_the_manifests():
    assert {path.name for path in KUBERNETES} >= {"deployment.yaml", "job-set-pipeline.yaml"}


@pytest.mark.parametrize("path", KUBERNETES, ids=lambda path: path.name)
def test_kubernetes_manifest_passes_strict_validation(path):
    result = kubernetes_validate(path)
    assert result.returncode == 0, report(result)
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    # One "passed" line per document: none was skipped as unknown.
    assert result.stdout.count(" passed for resource ") == len(documents), report(result)


def _unknown_pod_field(documents):
    documents[0]["spec"]["template"]["spec"]["restartPolicyy"] = "Never"


def _backoff_limit_as_text(documents):
    documents[0]["spec"]["backoffLimit"] = "five"


def _secret_mode_as_text(documents):
    (volume,) = [
        v for v in documents[0]["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"
    ]
    volume["secret"]["defaultMode"] = "0440"  # a string: Kubernetes wants the number


BROKEN_MANIFESTS = {
    "unknown-field": ("job-set-pipeline.yaml", _unknown_pod_field, "restartPolicyy"),
    "wrong-type": ("job-set-pipeline.yaml", _backoff_limit_as_text, "backoffLimit"),
    "mode-as-string": ("deployment.yaml", _secret_mode_as_text, "defaultMode"),
}


@pytest.mark.parametrize("case", BROKEN_MANIFESTS)
def test_kubernetes_validate_rejects_a_broken_manifest(case, tmp_path):
    name, change, expected = BROKEN_MANIFESTS[case]
    result = kubernetes_validate(
        broken_yaml(tmp_path, ROOT / "deploy" / "kubernetes" / name, change)
    )
    assert result.returncode != 0, report(result)
    assert expected in result.stdout + result.stderr, report(result)


# -- docker-compose.yml: the compose-spec schema ---------------------------------------------------


def check_compose(path):
    return lint("check-jsonschema", "--builtin-schema", COMPOSE_SCHEMA, path)


def test_compose_file_matches_the_compose_spec_schema():
    result = check_compose(COMPOSE)
    assert result.returncode == 0, report(result)


def _service_key_typo(documents):
    documents[0]["services"]["notify"]["restrat"] = "always"


def _ports_not_a_list(documents):
    documents[0]["services"]["pipeline-manager"]["ports"] = 8000


def _secret_without_file(documents):
    documents[0]["secrets"]["pipeline_webhook_secret"] = {"fiel": "./secrets/webhook_secret"}


BROKEN_COMPOSE = {
    "unknown-service-key": (_service_key_typo, "restrat"),
    "ports-not-a-list": (_ports_not_a_list, "not of type 'array'"),
    "secret-key-typo": (_secret_without_file, "fiel"),
}


@pytest.mark.parametrize("case", BROKEN_COMPOSE)
def test_compose_schema_rejects_a_broken_compose_file(case, tmp_path):
    change, expected = BROKEN_COMPOSE[case]
    result = check_compose(broken_yaml(tmp_path, COMPOSE, change))
    assert result.returncode != 0, report(result)
    assert expected in result.stdout + result.stderr, report(result)
