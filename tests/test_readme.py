"""README promises that tests keep true: the test command CI runs, the configuration table."""

from pathlib import Path

from webapp.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.endswith("-m pytest")
    assert f"\n{ci_command}\n" in README


def test_every_setting_is_in_the_readme_table():
    for setting in SETTINGS:
        assert f"| `{setting.env}` |" in README, setting.env
