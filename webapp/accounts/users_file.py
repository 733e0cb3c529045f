"""Change the users file: add, update or remove one account, as one atomic replacement.

The file is shared with hand edits and with root, so a rewrite keeps everything it does not
change byte for byte (comments, lines it cannot read), keeps the file's owner, group and mode,
and never leaves half a file: it writes a sibling and renames it over the old one, under a lock
on the directory so two ``flask user`` commands cannot lose each other's change. A new file is
created 0640 (owner writes, the server's group reads). No Flask here.
"""

import contextlib
import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from webapp.accounts.users import (
    MAX_FILE_BYTES,
    hash_password,
    read_file,
    validate_name,
    validate_password,
)
from webapp.core.errors import InvalidInput
from webapp.core.files import not_a_regular_file

NEW_FILE_MODE = 0o640


class UsersFileError(InvalidInput):
    """The users file or its directory cannot be read or written as asked."""


@dataclass(frozen=True)
class Rewrite:
    """What a rewrite did: whether the account was new, and whether the file was created."""

    path: Path
    account_created: bool
    file_created: bool
    mode: int


def set_password(path, name: str, password: str, rounds: int = 12) -> Rewrite:
    """Add ``name`` or give it a new password; return what was done."""
    name = validate_name(name)
    entry = f"{name}:{hash_password(validate_password(password), rounds)}".encode("ascii")

    def change(lines):
        kept = [line for line in lines if line_name(line) != name]
        others = {line_name(line).lower() for line in kept} - {""}
        if name.lower() in others:
            raise UsersFileError(
                f"another operator's name differs from {name!r} only in case: pick another name"
            )
        return [*kept, entry], len(kept) == len(lines)

    return rewrite(path, change)


def remove_account(path, name: str) -> Rewrite:
    """Remove ``name`` from the file; raise InvalidInput if it has no such line."""

    def change(lines):
        kept = [line for line in lines if line_name(line) != name]
        if len(kept) == len(lines):
            raise UsersFileError(f"no operator {name!r} in {path}")
        return kept, False

    return rewrite(path, change, create=False)


def line_name(line: bytes) -> str:
    """Return the account name a raw line defines ('' for comments and unreadable lines)."""
    text = line.removeprefix(b"\xef\xbb\xbf").strip(b" \t\r")
    if not text or text.startswith(b"#") or b":" not in text:
        return ""
    return text.partition(b":")[0].strip().decode("utf-8", "replace")


def check_target(path) -> Path:
    """Return the file a rewrite of ``path`` replaces, or refuse what would make it fail later:
    a missing or unwritable directory (the new file is a sibling renamed over the old one), a
    directory or unreadable file at the path. Run before asking for a password."""
    try:
        return _check_target(path)
    except OSError as error:  # a name too long, a loop of links: what stat itself refuses
        raise UsersFileError(f"cannot use {path} as the users file ({error.strerror})") from None


def _check_target(path) -> Path:
    target = Path(os.path.realpath(path))  # a symlink (a mounted secret) is followed, not replaced
    folder = target.parent
    if not folder.is_dir():
        # Never create directories: a typo in the path would otherwise make a new tree that the
        # server never reads, and the operator would think the account exists.
        raise UsersFileError(f"directory {folder} does not exist: create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsersFileError(f"cannot write in directory {folder}: permission denied")
    if target.is_dir():
        raise UsersFileError(f"{path} is a directory, not a users file")
    kind = not_a_regular_file(target)  # a rename would replace the device itself (as root)
    if kind:
        raise UsersFileError(f"{path} is {kind}, not a users file")
    if target.exists() and not os.access(target, os.R_OK):
        raise UsersFileError(f"cannot read {path}: permission denied")
    return target


def rewrite(path, change, create=True) -> Rewrite:
    """Replace the file with ``change(lines) -> (lines, account_created)``, atomically."""
    target = check_target(path)
    folder = target.parent
    with directory_lock(folder):
        try:
            info = os.stat(target)
        except FileNotFoundError:
            if not create:
                raise UsersFileError(f"{path} does not exist") from None
            info = None
        except OSError as error:
            raise UsersFileError(f"cannot read {path}: {error.strerror}") from None
        try:
            data = read_file(target) if info else b""
        except OSError as error:
            raise UsersFileError(f"cannot read {path}: {error.strerror}") from None
        ending = b"\r\n" if b"\r\n" in data else b"\n"
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # the newline that ends the last line starts no new one
        lines = [line.removesuffix(b"\r") for line in lines]
        new_lines, account_created = change(lines)
        content = b"".join(line + ending for line in new_lines)
        if len(content) > MAX_FILE_BYTES:
            raise UsersFileError(f"{path} would grow past {MAX_FILE_BYTES} bytes")
        mode = stat.S_IMODE(info.st_mode) if info else NEW_FILE_MODE
        replace(target, content, mode, (info.st_uid, info.st_gid) if info else None)
    return Rewrite(Path(path), account_created, info is None, mode)


def replace(target: Path, content: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Write ``content`` to a sibling of ``target`` with ``mode`` and ``owner``, then rename it."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(handle.fileno(), *owner)
                except PermissionError:
                    raise UsersFileError(
                        f"cannot keep the owner of {target} (uid {owner[0]}, gid {owner[1]}): "
                        "run the command as that user, or as root"
                    ) from None
            os.fchmod(handle.fileno(), mode)  # after chown, which may clear set-id bits
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(target.parent)


def sync_directory(folder: Path) -> None:
    """Make the rename itself durable (a crash right after must not bring the old file back)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def directory_lock(folder: Path):
    """Hold an exclusive ``flock`` on ``folder``: one rewrite of a file in it at a time."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise UsersFileError(f"cannot open directory {folder}: {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
