"""Secret-key policy: what key the server may sign sessions and CSRF tokens with. No Flask here.

Anyone who knows or guesses the key can forge a session cookie (for any operator) and every CSRF
token, so a key that a person typed, copied from an example or left at a default is refused
before the server starts, with the command that makes a good one. Development alone may run
without a key, on a per-process random one (one worker only: see gunicorn.conf.py).
"""

GENERATE = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
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
    return None


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


def refusal(problem: str, verb: str = "start") -> str:
    """Return the one line that refuses to ``verb`` because of ``problem``, with the remedy."""
    return f"{problem}: refusing to {verb} (generate a good key with: {GENERATE})"
