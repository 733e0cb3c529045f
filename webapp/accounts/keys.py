"""Secret-key policy: what key the server may sign sessions and CSRF tokens with. No Flask here.

Anyone who knows or guesses the key can forge a session cookie (for any operator) and every CSRF
token, so a key that a person typed, copied from an example or left at a default is refused
before the server starts, with the command that makes a good one. Development alone may run
without a key, on a per-process random one (one worker only: see gunicorn.conf.py).

Beyond the quick checks below, a key is judged by zxcvbn's estimate of the guesses it takes
(repeats, dictionary words in leetspeak, keyboard walks, dates, few distinct symbols all count
for little): ``'Tr0ub4dor&3' * 3 + '!'`` or eight emoji are as weak as they look. A key file
must not be readable by every user of the host (``/etc/passwd`` is a file, not a secret).
"""

import os
import stat

GENERATE = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
MIN_GUESSES_LOG10 = 27  # ~90 bits; token_hex(16) estimates at 10^27.7 or more, token_hex(32) 10^58
ESTIMATED_CHARS = 72  # zxcvbn's cost grows fast with length: the first 72 characters are judged
MIN_BYTES = 32
MIN_DISTINCT = 8  # token_hex(16) has ~14 distinct characters; "abababab…" has 2
# Placeholders and words people type for a key (compared without case or punctuation). Only
# words of six letters or more: a random key holds one by chance with negligible probability
# (digit runs like 123456 would not be: a hex key holds one in ~300 000; see LONGEST_RUN).
WEAK_WORDS = (
    "changeme",
    "secret",
    "password",
    "passwd",
    "default",
    "example",
    "letmein",
    "qwerty",
    "replaceme",
    "placeholder",
    "insecure",
)
LONGEST_RUN = 8  # "12345678", "abcdefgh": a keyboard walk, not randomness


def weakness(key: str) -> str | None:
    """Return why ``key`` is too weak to sign sessions, or None when it is acceptable."""
    size = len(key.encode("utf-8"))
    if size < MIN_BYTES:
        return f"is too short ({size} bytes; at least {MIN_BYTES})"
    if len(set(key)) < MIN_DISTINCT:
        return f"uses only {len(set(key))} different characters"
    unit = repeated_unit(key)
    if unit:
        return f"is one short sequence repeated ({len(unit)} characters)"
    letters = "".join(char for char in key.lower() if char.isalnum())
    word = next((word for word in WEAK_WORDS if word in letters), None)
    if word:
        return f"contains the word {word!r}, a placeholder or guessable text"
    if longest_run(key) >= LONGEST_RUN:
        return "contains a run of consecutive characters (like 12345678 or abcdefgh)"
    guesses = estimated_guesses_log10(key)
    if guesses < MIN_GUESSES_LOG10:
        return (
            f"is guessable: about 10^{int(guesses)} guesses by zxcvbn's estimate (words, "
            f"leetspeak, repeats or few symbols; a key needs 10^{MIN_GUESSES_LOG10})"
        )
    return None


def estimated_guesses_log10(key: str) -> float:
    """Return log10 of the guesses zxcvbn estimates ``key`` takes (its first 72 characters)."""
    from zxcvbn import zxcvbn

    return float(zxcvbn(key[:ESTIMATED_CHARS])["guesses_log10"])


def repeated_unit(key: str) -> str | None:
    """Return the unit ``key`` repeats ("ab" for "ababab"), or None."""
    for length in range(1, len(key) // 2 + 1):
        if len(key) % length == 0 and key[:length] * (len(key) // length) == key:
            return key[:length]
    return None


def longest_run(key: str) -> int:
    """Return the length of the longest run of characters that step by +1 or -1."""
    best = run = 1
    step = 0
    for before, char in zip(key, key[1:], strict=False):
        difference = ord(char) - ord(before)
        if difference in (1, -1) and difference == step:
            run += 1
        elif difference in (1, -1):
            run, step = 2, difference
        else:
            run, step = 1, 0
        best = max(best, run)
    return best if key else 0


def key_problem(key: str | None, source: str, development: bool) -> str | None:
    """Return what is wrong with ``key`` (read from ``source``) for serving, or None.

    Only development may go without a key (each process then makes a random one); a key that is
    set must be strong in every mode, since a weak one is as good as none.
    """
    if not key:
        return None if development else "PIPELINE_SECRET_KEY is not set (outside development)"
    reason = weakness(key)
    return None if reason is None else f"{source} {reason}"


def key_file_problem(path) -> str | None:
    """Return why the key file ``path`` cannot hold a secret (readable by others), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reading it says what is wrong (config.read_secret_file)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return (
            f"PIPELINE_SECRET_KEY_FILE ({path}) can be read or written by every user of this "
            f"host (mode {stat.S_IMODE(mode):04o}): a key must be private, make it 0640 or 0600"
        )
    return None


def configured_key_problem(settings, development: bool) -> str | None:
    """Return what is wrong with the key the settings give (its file included), or None."""
    source = settings.get("SECRET_KEY_SOURCE", "PIPELINE_SECRET_KEY")
    if source.startswith("PIPELINE_SECRET_KEY_FILE") and settings.get("SECRET_KEY_FILE"):
        problem = key_file_problem(settings["SECRET_KEY_FILE"])
        if problem:
            return problem
    return key_problem(settings.get("SECRET_KEY"), source, development)


def refusal(problem: str, verb: str = "start") -> str:
    """Return the one line that refuses to ``verb`` because of ``problem``, with the remedy."""
    return f"{problem}: refusing to {verb} (generate a good key with: {GENERATE})"
