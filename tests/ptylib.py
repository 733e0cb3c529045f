"""Run a command in a real pseudo-terminal, as an operator types it: the terminal is the
process's controlling tty (so getpass and curl prompt on it), and prompts are answered as
they appear, never ahead of them."""

import fcntl
import os
import re
import select
import subprocess
import termios
import time
from dataclasses import dataclass

WAIT = 60.0  # seconds one command may take on a loaded 2-core machine
# What our `user add`, click's confirmation and curl print when they ask for a password.
PASSWORD_PROMPT = re.compile(r"(?i)(password[^\n]*|confirmation):\s*$")


@dataclass
class Session:
    """What a command printed on its terminal, and how it exited."""

    output: str
    returncode: int
    prompts: int  # how many password prompts were answered


def run_in_terminal(
    argv, *, password=None, env=None, cwd=None, stderr=None, timeout=WAIT
) -> Session:
    """Run ``argv`` with stdin, stdout (and stderr, unless given) on a new terminal; answer each
    password prompt with ``password``. ``stderr=subprocess.PIPE`` keeps stderr off the terminal
    (its text is then appended to the output after a ``--- stderr`` line)."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave if stderr is None else stderr,
        cwd=cwd,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    chunks, prompts, deadline = [], 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None and not _has_data(master):
                    break
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
            if password is not None and PASSWORD_PROMPT.search(_tail(chunks)):
                os.write(master, password.encode() + b"\n")
                chunks.append(b"\n")  # the answer is not echoed: keep prompts on their own line
                prompts += 1
        else:
            process.kill()
            raise AssertionError(f"{argv} still running after {timeout} s:\n{_text(chunks)}")
        returncode = process.wait(timeout=timeout)
    finally:
        os.close(master)
    output = _text(chunks)
    if stderr is not None:
        output += "\n--- stderr\n" + process.stderr.read().decode("utf-8", "replace")
        process.stderr.close()
    return Session(output, returncode, prompts)


def _has_data(fd) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _tail(chunks) -> str:
    return b"".join(chunks[-4:]).decode("utf-8", "replace").rsplit("\n", 1)[-1]


def _text(chunks) -> str:
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
