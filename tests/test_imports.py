"""The core imports no web stack: the uploader API and the CLI load without Flask."""

import subprocess
import sys

import pytest

WEB_STACK = ("flask", "werkzeug", "jinja2", "htmx_flask", "flask_wtf", "wtforms")


@pytest.mark.parametrize(
    "module",
    ["webapp", "webapp.uploader", "webapp.store", "webapp.cli", "webapp.watch", "webapp.export"],
)
def test_the_core_loads_no_web_stack(module):
    probe = f"import sys, {module}\nprint(','.join(m for m in {WEB_STACK!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} loaded {result.stdout.strip()}"


def test_the_web_app_still_builds_from_the_package():
    probe = "import webapp; app = webapp.create_app({'TESTING': True}); print(app.name)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
