"""Node labels (``region=eu,site=berlin``): the rules a node's labels and a centre's label
selector share. Keys are short lower-case words; values follow the text rules. No Flask.
"""

import re

from webapp.core.errors import InvalidInput
from webapp.core.text import clean_text

LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
MAX_LABELS = 64
MAX_LABEL_VALUE = 128


def label_key_problem(key) -> str | None:
    """Return why ``key`` cannot be a label key, or None."""
    if not isinstance(key, str) or not LABEL_KEY.match(key):
        return "must be 1-63 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
    return None


def label_value(value, key: str) -> str:
    """Return ``value`` if it can be label ``key``'s value (the text rules, ≤ 128), else raise."""
    cleaned = clean_text(value, f"label {key}", MAX_LABEL_VALUE, required=True)
    if cleaned != value:
        raise InvalidInput(f"label {key} must not start or end with spaces")
    return cleaned


def parse_labels(pairs, where: str) -> dict[str, str]:
    """Return the labels of ``KEY=VALUE`` texts (``where`` names them in errors); a key given
    twice with different values, a bad key or value, or more than MAX_LABELS are refused."""
    labels: dict[str, str] = {}
    for pair in pairs:
        if not pair.strip():
            continue
        key, equals, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            raise InvalidInput(f"{where}: {pair.strip()[:80]!r} is not KEY=VALUE")
        problem = label_key_problem(key)
        if problem:
            raise InvalidInput(f"{where}: label key {key!r} {problem}")
        value = label_value(value, key)
        if labels.setdefault(key, value) != value:
            raise InvalidInput(f"{where}: label {key} is given twice")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"{where}: at most {MAX_LABELS} labels (got {len(labels)})")
    return labels


def split_labels(text: str | None) -> list[str]:
    """Return the ``KEY=VALUE`` parts of a comma-separated list (``PIPELINE_NODE_LABELS``)."""
    return (text or "").split(",")
