"""Operator accounts in an htpasswd file with bcrypt hashes (what ``htpasswd -nB NAME`` prints).

No Flask here. bcrypt is imported inside the functions that hash or check, so importing this
module (and starting the CLI) stays cheap.
"""

import hmac
import os
import secrets
import tempfile
import time
from pathlib import Path

from .errors import InvalidInput
from .text import MAX_NAME  # an account name must also be a valid updated_by

MAX_PASSWORD_BYTES = 72  # bcrypt only reads 72 bytes; bcrypt 5 refuses longer input
BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
# Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = b"$2b$12$8a.bCPYuQRnGfWHoNWjZjeKAY8oe2/R0xG1L/YCJQsUeu9So9ZzVe"

_cache: dict[str, tuple[tuple, dict[str, str]]] = {}  # path -> (file stamp, accounts)
_verified: dict[bytes, float] = {}  # keyed digest of a checked login -> valid until (monotonic)
_CACHE_KEY = secrets.token_bytes(32)


def validate_name(name: str) -> str:
    """Return ``name`` if it can be an account name, else raise InvalidInput."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("operator name is required")
    if len(name) > MAX_NAME or ":" in name or any(ord(ch) < 32 for ch in name):
        raise InvalidInput(f"invalid operator name {name!r}: no ':', no control characters")
    return name


def load(path) -> dict[str, str]:
    """Return ``{name: hash}`` from the htpasswd file (re-read only when the file changes)."""
    if not path:
        return {}
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    key, stamp = os.fspath(path), (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached and cached[0] == stamp:
        return cached[1]
    accounts = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        name, sep, hashed = line.strip().partition(":")
        if sep and name and not name.startswith("#") and hashed.startswith(BCRYPT_PREFIXES):
            accounts[name] = hashed  # other schemes (MD5, crypt) are ignored, never trusted
    _cache[key] = (stamp, accounts)
    return accounts


def verify(path, name: str, password: str) -> bool:
    """Return True when ``password`` matches ``name``'s bcrypt hash."""
    import bcrypt

    hashed = load(path).get(name)
    secret = (password or "").encode("utf-8")
    if len(secret) > MAX_PASSWORD_BYTES:
        return False
    try:
        matches = bcrypt.checkpw(secret, hashed.encode("ascii") if hashed else _DUMMY_HASH)
    except ValueError:  # a malformed hash in the file
        return False
    return matches and hashed is not None


def verify_cached(path, name: str, password: str, ttl: float = 60.0) -> bool:
    """Like :func:`verify`, remembering a success for ``ttl`` seconds.

    HTTP Basic sends the password with every API call, and a bcrypt check costs a quarter of a
    second by design. Only successes are kept, as a keyed digest that also covers the stored hash
    (a changed password or a removed account misses at once), never the password itself.
    """
    hashed = load(path).get(name)
    if hashed is None:
        return verify(path, name, password)  # same cost as a known name: no timing hint
    key = hmac.new(_CACHE_KEY, f"{name}\0{password}\0{hashed}".encode(), "sha256").digest()
    now = time.monotonic()
    if _verified.get(key, 0.0) > now:
        return True
    if not verify(path, name, password):
        return False
    if len(_verified) > 1000:
        _verified.clear()
    _verified[key] = now + ttl
    return True


def hash_password(password: str, rounds: int = 12) -> str:
    """Return a ``$2y$`` bcrypt hash, the form Apache's ``htpasswd -B`` writes."""
    import bcrypt

    secret = password.encode("utf-8")
    if not secret:
        raise InvalidInput("password must not be empty")
    if len(secret) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"password is too long (at most {MAX_PASSWORD_BYTES} bytes)")
    return "$2y$" + bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode("ascii")[4:]


def set_password(path, name: str, password: str, rounds: int = 12) -> bool:
    """Add or update ``name`` in the htpasswd file; return True if the account is new."""
    name = validate_name(name)
    entry = f"{name}:{hash_password(password, rounds)}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [line for line in lines if line.partition(":")[0].strip() != name]
    created = len(kept) == len(lines)
    # Write a sibling file and rename it over the old one: a reader never sees half a file.
    folder = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join([*kept, entry]) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return created
