"""Operator accounts in an htpasswd file with bcrypt hashes (what ``htpasswd -nB NAME`` prints).

The file is edited by hand and by ``flask user``, sometimes as root, so reading it never raises:
a file that cannot be used at all gives a ``problem`` (nobody can sign in; the site stays up,
read-only), a line that cannot be used is ``skipped`` with its number and reason and never
matches. No Flask here. bcrypt is imported inside the functions that hash or check, so importing
this module (and starting the CLI) stays cheap.
"""

import hmac
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field

from webapp.core.errors import InvalidInput
from webapp.core.text import (  # an account name must also be a valid updated_by
    MAX_NAME,
    clean_text,
    describe,
)

MAX_PASSWORD_BYTES = 72  # bcrypt only reads 72 bytes; bcrypt 5 refuses longer input
MIN_PASSWORD_LENGTH = 12
MAX_FILE_BYTES = 1 << 20  # thousands of accounts; anything larger is not a users file
NAME_CHARACTERS = "letters a-z and A-Z, digits, '.', '_', '-' and '@'"
# ASCII only: look-alike letters from other scripts ("аlice" with a Cyrillic а) must not become a
# second "alice" in the history. The first character is a letter or digit (never "-rf").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*\Z")
BCRYPT_PATTERN = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}\Z")
# Costs a line may have: below 12 (`htpasswd -nB` writes 5) is accepted but logged as weak;
# above 14 one check would hold the password gate for seconds (a cost-31 line, for hours).
MIN_COST, GOOD_COST, MAX_COST = 4, 12, 14
# What the other hash schemes htpasswd can write look like, to say which one a line uses.
OTHER_SCHEMES = (
    ("$apr1$", "an MD5 (apr1) hash"),
    ("{SHA}", "a SHA-1 hash"),
    ("$1$", "an MD5-crypt hash"),
    ("$5$", "a SHA-256-crypt hash"),
    ("$6$", "a SHA-512-crypt hash"),
    ("$2", "a malformed bcrypt hash"),
)
# Hashes of a random password nobody knows, one per cost: checked for an unknown name, and to
# pad a refusal up to the file's highest cost, so that every refusal does the same bcrypt work
# whether the name exists or not and whatever its hash's cost (see verify()).
_DUMMY_HASHES = {
    4: b"$2b$04$g5z7qIaeys1iQ/Y640JwA.yvuc3aKag4Z8/PXq/OWrHnQoAesWmyq",
    5: b"$2b$05$QB./uPc9TA/OLpca.HkvpOqad0/eOoiUfk0SmSutmrJPDrnAW3nZm",
    6: b"$2b$06$8OrfrZ1pYSe9qyOFuvHHaey.G32STTpf9OYyIkCUOcV0Wf6xlsmAW",
    7: b"$2b$07$2qX.b9Q7wBStvLm0t.RNwecpMr8P2/xkh6KGFkhaDCHgx3Nj24.fi",
    8: b"$2b$08$Gt51kgfmEzpSE6BjvegDyuPNMVRIWkUZid7.xjDTm8ZRIBvPQJ3ei",
    9: b"$2b$09$mTp0gv4rPqXodeN0R7DvxOEtU3NQCJDdAzcdVOKE2GwZHGHuIrrSm",
    10: b"$2b$10$xQ2uILhgEVSYET4wZM2uB.P3tRbwmBgNXxJtdpP9n1NwTf1wrq8zS",
    11: b"$2b$11$OUMPE.tQ4m72VxBR1R47K.7RdcYp135kxvVLHO1C6vTGimyOdtflG",
    12: b"$2b$12$gGpeXZEcY4Yh2ZC15Um3OusidQecV1eWKHdjW8MDLOzPSLN3SEeGK",
    13: b"$2b$13$4P2lLsXHo4fMzTbnFiBxtu5h0XUO5RrvXbdMq0M7ZsnjOdH8Px/.S",
    14: b"$2b$14$HPRU5R2nY9zbQQMDPiIPzeJWovTWXpwCQ2YJciiqwXcZWSwOnYqTS",
}

_cache: dict[str, tuple[tuple, "Accounts"]] = {}  # path -> (file stamp, accounts)
_verified: dict[bytes, float] = {}  # keyed digest of a checked login -> valid until (monotonic)
_CACHE_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class Accounts:
    """What the users file gives: usable accounts, a file-wide problem, unusable lines."""

    users: dict[str, str] = field(default_factory=dict)  # name -> bcrypt hash
    problem: str | None = None  # set when the file cannot be used at all: nobody signs in
    skipped: tuple[tuple[int, str], ...] = ()  # (line number, why it never matches)
    cost: int = GOOD_COST  # the highest bcrypt cost of a usable line: what every refusal costs


def hash_cost(hashed: str) -> int:
    """Return the bcrypt cost of a usable hash (``$2y$05$...`` → 5)."""
    return int(hashed[4:6])


def name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be an account name ("contains U+0020 (space)"), or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    bad = next(
        (char for char in name if not (char.isascii() and char.isalnum() or char in "._@-")), None
    )
    if bad is not None:
        return f"contains {describe(bad)}"
    if not NAME_PATTERN.match(name):
        return "must start with a letter or digit"
    return None


def validate_name(name: str) -> str:
    """Return ``name`` if it can be an account name, else raise InvalidInput."""
    name = clean_text(name, "operator name", MAX_NAME, required=True)
    problem = name_problem(name)
    if problem:
        raise InvalidInput(
            f"invalid operator name {name!r}: it {problem}; use only {NAME_CHARACTERS}"
        )
    return name


def validate_password(password: str) -> str:
    """Return ``password`` if it is long enough for bcrypt to protect, else raise InvalidInput."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password is too short (at least {MIN_PASSWORD_LENGTH} characters)")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"password is too long (at most {MAX_PASSWORD_BYTES} bytes)")
    return password


def read_file(path) -> bytes:
    """Return the bytes of the regular file ``path``; raise OSError with a readable strerror."""
    # O_NONBLOCK: a FIFO put in its place must not hang the worker; a regular file ignores it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise OSError(0, f"is larger than {MAX_FILE_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)


def load(path) -> Accounts:
    """Return the accounts in the htpasswd file (re-read only when the file changes)."""
    if not path:
        return Accounts()
    key = os.fspath(path)
    try:
        info = os.stat(path)
        stamp = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_mode)
        cached = _cache.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
        data = read_file(path)
    except FileNotFoundError:
        return Accounts(problem="not found")
    except OSError as error:
        return Accounts(problem=f"cannot be read ({(error.strerror or str(error)).lower()})")
    users, skipped = parse(data)
    cost = max(map(hash_cost, users.values()), default=GOOD_COST)
    accounts = Accounts(users, None, tuple(skipped), cost)
    _cache[key] = (stamp, accounts)
    return accounts


def parse(data: bytes) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Return ``({name: hash}, [(line number, why skipped)])`` from an htpasswd file's bytes."""
    users, skipped, first_seen = {}, [], {}
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        line = raw.strip(b" \t\r")
        if not line or line.startswith(b"#"):
            continue  # blank or a comment, whatever its bytes
        try:
            name, sep, hashed = line.decode("utf-8").partition(":")
        except UnicodeDecodeError:
            skipped.append((number, "not valid UTF-8"))
            continue
        name, hashed = name.strip(), hashed.strip()
        why = line_problem(name, sep, hashed)
        if why is None and name.lower() in first_seen:
            why = f"repeats the name on line {first_seen[name.lower()]}"
        if why:
            skipped.append((number, why))
            continue
        first_seen[name.lower()] = number
        users[name] = hashed
    return users, skipped


def line_problem(name: str, sep: str, hashed: str) -> str | None:
    """Return why a ``name:hash`` line cannot be used, or None."""
    if not sep:
        return "no ':' between name and hash"
    problem = name_problem(name)
    if problem:
        return f"the operator name {problem}: use only {NAME_CHARACTERS}"
    if BCRYPT_PATTERN.match(hashed):
        cost = hash_cost(hashed)
        if cost > MAX_COST:
            return (
                f"a bcrypt cost of {cost}: each check would take seconds (at most {MAX_COST}; "
                "`flask user add` writes 12)"
            )
        return None
    scheme = next((text for prefix, text in OTHER_SCHEMES if hashed.startswith(prefix)), None)
    scheme = scheme or "plain text or an unknown hash"
    return f"{scheme}: only bcrypt (htpasswd -B) is accepted"


def verify(path, name: str, password: str) -> bool:
    """Return True when ``password`` matches ``name``'s bcrypt hash.

    A refusal always does the work of one check at the file's highest cost: an unknown name is
    checked against a dummy hash of that cost, and a wrong password for a cheaper hash is padded
    with dummy checks of each cost from its own up (2^c + 2^c + ... + 2^(t-1) = 2^t rounds).
    """
    accounts = load(path)
    hashed = accounts.users.get(name)
    secret = (password or "").encode("utf-8", "surrogatepass")
    if len(secret) > MAX_PASSWORD_BYTES:
        return False  # refused before any hashing, whoever the name is
    if hashed is None:
        bcrypt_check(secret, _DUMMY_HASHES[accounts.cost])
        return False
    if bcrypt_check(secret, hashed.encode("ascii")):
        return True
    for cost in range(hash_cost(hashed), accounts.cost):
        bcrypt_check(secret, _DUMMY_HASHES[cost])
    return False


def bcrypt_check(secret: bytes, hashed: bytes) -> bool:
    """Return ``bcrypt.checkpw(secret, hashed)``, False for a hash bcrypt refuses."""
    import bcrypt

    try:
        return bcrypt.checkpw(secret, hashed)
    except ValueError:  # a hash bcrypt itself refuses (the pattern above should catch it first)
        return False


def cached_success(path, name: str, password: str) -> bool:
    """Return True when this exact login succeeded within the last minute (no bcrypt)."""
    key = _cache_key(path, name, password)
    return key is not None and _verified.get(key, 0.0) > time.monotonic()


def verify_cached(path, name: str, password: str, ttl: float = 60.0) -> bool:
    """Like :func:`verify`, remembering a success for ``ttl`` seconds.

    HTTP Basic sends the password with every API call, and a bcrypt check costs a quarter of a
    second by design. Only successes are kept, as a keyed digest that also covers the stored hash
    (a changed password or a removed account misses at once), never the password itself.
    """
    if cached_success(path, name, password):
        return True
    if not verify(path, name, password):
        return False
    if len(_verified) > 1000:
        _verified.clear()
    _verified[_cache_key(path, name, password)] = time.monotonic() + ttl
    return True


def _cache_key(path, name, password) -> bytes | None:
    hashed = load(path).users.get(name)
    if hashed is None:
        return None
    return login_key(path, name, password)


def login_key(path, name: str, password: str) -> bytes:
    """Return a keyed digest of a login (the name, the password and the stored hash, if any):
    equal for the same credentials against the same account, never the password itself."""
    hashed = load(path).users.get(name) or ""
    text = f"{name}\0{password}\0{hashed}".encode("utf-8", "surrogatepass")
    return hmac.new(_CACHE_KEY, text, "sha256").digest()


def fingerprint(hashed: str) -> str:
    """Return a short digest of a stored hash: a session remembers it, not the hash itself."""
    import hashlib

    return hashlib.sha256(hashed.encode("utf-8")).hexdigest()[:32]


def hash_password(password: str, rounds: int = 12) -> str:
    """Return a ``$2y$`` bcrypt hash, the form Apache's ``htpasswd -B`` writes."""
    import bcrypt

    secret = password.encode("utf-8")
    if not secret:
        raise InvalidInput("password must not be empty")
    if len(secret) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"password is too long (at most {MAX_PASSWORD_BYTES} bytes)")
    return "$2y$" + bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode("ascii")[4:]
