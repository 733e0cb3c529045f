"""Files the tool replaces by writing a temporary sibling and renaming it over the old one (the
notifier's state and metrics files, the users file). No Flask.

A rename replaces whatever the path names: run as root, ``--state /dev/null`` would put a regular
file where the null device was, and every program on the host that writes to it would fill a
file. So an existing path that is not a regular file is refused before anything is written.
"""

import os
import stat

from webapp.core.errors import InvalidInput
from webapp.core.text import terminal_safe

KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def not_a_regular_file(path) -> str | None:
    """Return what ``path`` is when it exists and is not a regular file (links followed)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # missing (or unreadable): the write itself says what is wrong
    if stat.S_ISREG(mode):
        return None
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_replaceable(path, what: str) -> None:
    """Refuse (InvalidInput) to replace ``path`` when it exists and is not a regular file."""
    kind = not_a_regular_file(path)
    if kind:
        raise InvalidInput(f"the {what} {terminal_safe(path)} is {kind}: name a regular file")
