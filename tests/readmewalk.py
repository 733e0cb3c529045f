"""Walk README.md's shell blocks as a newcomer does: in order, as printed, in a fresh copy of the
checkout, from a shell with no venv activated (PATH is the system's only).

Only the quick start's ``pip install`` is not run (no network in tests): the copy gets a venv
whose site-packages see this venv's installed packages and the copy's own source, and whose
``bin/`` holds the same console scripts. Everything after it runs as printed, through bash on a
real terminal (tests/ptylib.py), answering password prompts as an operator types them. Ports
are moved to free ones, and production paths to the quick start's (the README says which).
"""

import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

from live import ROOT

SCRIPTS = ("flask", "pipeline-manager", "gunicorn")
# A command that runs until stopped: the dashboard, `monitor` without --count, `notify`.
LONG_RUNNING = re.compile(r"\bflask\b.*\srun\b|\bmonitor\b(?!.*--count)|\snotify\b")
READY = {
    "run": r"Running on http://127\.0\.0\.1:\d+",
    "monitor": r"current: ",
    "notify": "watching ",
}


@dataclass
class Block:
    """One ```bash block of the README: the section it is in, and its commands."""

    section: str
    commands: list[str]  # one per logical line (continuations joined)


def bash_blocks(text) -> list[Block]:
    blocks, section = [], ""
    for match in re.finditer(r"^## ([^\n]+)$|^```bash\n(.*?)^```", text, flags=re.M | re.S):
        if match[1]:
            section = match[1].strip()
            continue
        joined = re.sub(r"\\\n\s*", " ", match[2])
        commands = [line for line in joined.splitlines() if line.strip()]
        blocks.append(Block(section, commands))
    return blocks


def segments(commands):
    """Yield ``("script", [lines])`` for runs of commands that end by themselves, and
    ``("long", line)`` for each command that runs until stopped."""
    script = []
    for line in commands:
        if LONG_RUNNING.search(line.split("#", 1)[0]):
            if script:
                yield "script", script
                script = []
            yield "long", line
        else:
            script.append(line)
    if script:
        yield "script", script


def ready_pattern(line) -> str:
    for word, pattern in READY.items():
        if re.search(rf"\b{word}\b", line):
            return pattern
    raise AssertionError(f"no readiness marker for {line!r}")


def fresh_clone(destination: Path) -> Path:
    """Copy the checkout's files (tracked and new, not ignored) to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def installed_venv(clone: Path) -> Path:
    """Make ``clone/.venv`` as the quick start's install would: the packages of this venv, the
    clone's own source, and the console scripts (their shebang pointing at the new python)."""
    target = clone / ".venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The clone first: `webapp` (and its instance/ folder) must be the copy's, never this one's.
    Path(site, "_readme_walk.pth").write_text(f"{clone}\n{sysconfig.get_paths()['purelib']}\n")
    here = Path(sys.executable).parent
    for name in SCRIPTS:
        body = (here / name).read_text().split("\n", 1)[1]
        (target / "bin" / name).write_text(f"#!{python}\n{body}")
        (target / "bin" / name).chmod(0o755)
    return target
