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
