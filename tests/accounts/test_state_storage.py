"""The state every worker shares (sessions, failed-login counts) has bounded storage wherever it
is deployed (issue 15.7): a size limit on each in-memory mount, and caps in the code."""

from pathlib import Path

import yaml

from webapp.accounts.sessions import MAX_RECORD_BYTES, MAX_SESSIONS
from webapp.accounts.throttle import MAX_FILES, MAX_STATE_BYTES

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = 4096  # what tmpfs allocates for a small file
INSTANCE_LIMIT = 64 * 1024 * 1024


def megabytes(size: str) -> int:
    units = {"m": 1 << 20, "Mi": 1 << 20, "k": 1 << 10, "Ki": 1 << 10, "g": 1 << 30, "Gi": 1 << 30}
    for unit, factor in units.items():
        if size.endswith(unit) and size[: -len(unit)].isdigit():
            return int(size[: -len(unit)]) * factor
    raise AssertionError(f"no size unit in {size!r}")


def test_the_caps_fit_the_state_mount():
    worst = MAX_FILES * max(PAGE, MAX_STATE_BYTES) + MAX_SESSIONS * max(PAGE, MAX_RECORD_BYTES)
    assert worst < INSTANCE_LIMIT


def test_every_compose_tmpfs_has_a_size_limit():
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in document["services"].items():
        for mount in service.get("tmpfs", []):
            path, _, options = mount.partition(":")
            sizes = [o.split("=", 1)[1] for o in options.split(",") if o.startswith("size=")]
            assert sizes, f"{name}: tmpfs {path} has no size limit"
            if path == "/app/instance":
                assert megabytes(sizes[0]) == INSTANCE_LIMIT


def test_every_kubernetes_memory_volume_has_a_size_limit():
    for manifest in (ROOT / "deploy" / "kubernetes").glob("*.yaml"):
        for document in yaml.safe_load_all(manifest.read_text()):
            spec = (document or {}).get("spec", {}).get("template", {}).get("spec", {})
            for volume in spec.get("volumes", []):
                empty = volume.get("emptyDir")
                if empty is not None and (
                    empty.get("medium") == "Memory" or volume["name"] == "instance"
                ):
                    assert "sizeLimit" in empty, f"{manifest.name}: {volume['name']}"
                    if volume["name"] == "instance":
                        assert megabytes(empty["sizeLimit"]) == INSTANCE_LIMIT
