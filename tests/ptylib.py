"""Run a command in a real pseudo-terminal, as an operator types it: the terminal is the
process's controlling tty (so getpass and curl prompt on it), and prompts are answered as
they appear, never ahead of them."""

import fcntl
import os
import re
import signal
import subprocess
import termios
import threading
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


class Terminal:
    """A command on a new terminal (stdin, stdout and, unless given, stderr), read as it prints;
    each password prompt is answered with ``password``. The command leads its own session, so
    :meth:`stop` reaches every process it started (flask's reloader included)."""

    def __init__(self, argv, *, password=None, env=None, cwd=None, stderr=None):
        self.password = password
        master, slave = os.openpty()
        self.process = subprocess.Popen(
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
        self._master = master
        self._chunks: list[bytes] = []
        self.prompts = 0
        self._news = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: every process holding the terminal is gone
                data = b""
            with self._news:
                if not data:
                    self._closed = True
                    self._news.notify_all()
                    return
                self._chunks.append(data)
                tail = b"".join(self._chunks[-4:]).decode("utf-8", "replace").rsplit("\n", 1)[-1]
                if self.password is not None and PASSWORD_PROMPT.search(tail):
                    typed = (
                        self.password
                        if isinstance(self.password, bytes)
                        else self.password.encode()
                    )
                    os.write(self._master, typed + b"\n")
                    self._chunks.append(b"\n")  # not echoed: keep the next line on its own
                    self.prompts += 1
                self._news.notify_all()

    @property
    def output(self) -> str:
        with self._news:
            return b"".join(self._chunks).decode("utf-8", "replace").replace("\r\n", "\n")

    def wait_for(self, pattern, timeout=WAIT) -> re.Match:
        """Wait until the output matches ``pattern`` (or the command ends without it)."""
        regex = re.compile(pattern)

        def found():
            return regex.search(self.output) or (self._closed and self.process.poll() is not None)

        with self._news:
            self._news.wait_for(found, timeout=timeout)
        match = regex.search(self.output)
        if not match:
            raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.output}")
        return match

    def stop(self, signal_number=signal.SIGINT, timeout=WAIT) -> int:
        """Send ``signal_number`` to the command's whole session; return its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal_number)
        return self.wait(timeout).returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def wait(self, timeout=WAIT) -> Session:
        """Wait for the command to end; return what it printed."""
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.output}") from None
        self._reader.join(timeout)
        output = self.output
        if self.process.stderr is not None:
            output += "\n--- stderr\n" + self.process.stderr.read().decode("utf-8", "replace")
            self.process.stderr.close()
        os.close(self._master)
        return Session(output, returncode, self.prompts)


def run_in_terminal(argv, *, password=None, env=None, cwd=None, stderr=None, timeout=WAIT):
    """Run ``argv`` on a new terminal to its end (see :class:`Terminal`). ``stderr=PIPE`` keeps
    stderr off the terminal: its text follows the output after a ``--- stderr`` line."""
    return Terminal(argv, password=password, env=env, cwd=cwd, stderr=stderr).wait(timeout)
