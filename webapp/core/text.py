"""Text rules: what an operator may store (reason, names), and how stored text is shown safely.

One definition for every entrance (CLI, form, API, ``flask user add``): valid Unicode, one line,
no control or bidi-override characters, a length limit. Rows written by other tools may hold
anything, so output to a terminal escapes what it could act on. No Flask, no SQL.
"""

import re
import unicodedata
import urllib.parse

from webapp.core.errors import InvalidInput

MAX_NAME = 200
MAX_REASON = 2000

# Bidi embeddings/overrides (U+202A–U+202E) and isolates (U+2066–U+2069) reorder what follows
# them on screen: "Trojan Source" text that reads differently from what it is.
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
# Control (C0, DEL, C1), surrogate, line and paragraph separator categories.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def forbidden(char: str) -> bool:
    """Return True for a character no stored text may hold."""
    return char in BIDI_CONTROLS or unicodedata.category(char) in FORBIDDEN_CATEGORIES


def describe(char: str) -> str:
    """Name a refused character for a message: ``U+000A (line feed)``."""
    if 0xD800 <= ord(char) <= 0xDFFF:
        return f"U+{ord(char):04X} (a lone surrogate: not valid Unicode)"
    name = unicodedata.name(char, "") or {"\n": "line feed", "\r": "carriage return"}.get(char, "")
    return f"U+{ord(char):04X}" + (f" ({name.lower()})" if name else "")


def clean_text(value, field: str, max_length: int, *, required=False) -> str | None:
    """Return ``value`` stripped, or None when empty; raise :class:`InvalidInput` naming ``field``.

    Refused: anything but text, a lone surrogate, control characters (C0 including newline and
    tab, DEL, C1), line/paragraph separators, bidi overrides and isolates, and over-long text.
    The characters are checked before anything is stripped: ``"why\n"`` is refused, not
    trimmed into ``"why"`` (``str.strip`` also removes TAB, U+001C–U+001F, U+0085, U+2028...).
    """
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{field} must be text")
    bad = next((char for char in value or "" if forbidden(char)), None)
    if bad is not None:
        raise InvalidInput(f"{field} must be one line of plain text: it contains {describe(bad)}")
    value = (value or "").strip()
    if required and not value:
        raise InvalidInput(f"{field} is required")
    if len(value) > max_length:
        raise InvalidInput(f"{field} is too long ({len(value)} characters, at most {max_length})")
    return value or None


MAX_ID = 2**63 - 1  # SQLite's largest integer: no change id or count is larger


def whole_number(text, field: str, low: int = 0, high: int = MAX_ID) -> int:
    """Return ``text`` as an int from ``low`` to ``high``, or raise :class:`InvalidInput`.

    The one integer parser of every entrance (query strings, forms, headers, the API's body, CLI
    options, settings): ASCII digits only. ``int()`` also takes "١٧", "１７", " 17", "1_7" and
    "+17", and a route's ``\\d`` matches any script's digits.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 19:
        value = int(text)
    else:
        value = None
    if value is None or not low <= value <= high:
        raise InvalidInput(f"{field} must be a whole number from {low} to {high}")
    return value


# "%" not followed by two hex digits: urllib would keep it as literal text.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def check_urlencoded(data: bytes, what: str) -> None:
    """Refuse a query string or form body that does not decode to valid UTF-8 text.

    Werkzeug keeps ``%FF``, an encoded surrogate (``%ED%A0%80``) or a malformed ``%G1`` as literal
    text, which would then be stored as if the operator had typed it.
    """
    if not data:
        return
    escape = _BAD_ESCAPE.search(data)
    if escape is not None:
        shown = data[escape.start() : escape.start() + 3].decode("ascii", "backslashreplace")
        raise InvalidInput(f"{what} holds a malformed percent escape ({terminal_safe(shown)})")
    try:
        urllib.parse.unquote_to_bytes(data.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"{what} is not valid UTF-8 once decoded (byte 0x{error.object[error.start]:02x}): "
            "send UTF-8 text, percent-encoded"
        ) from None


# Marks that steer bidi display without being overrides; escaped on terminals, allowed in input.
BIDI_MARKS = frozenset("\u200e\u200f\u061c")


def terminal_safe(text) -> str:
    """Return ``text`` with everything a terminal could act on shown as an escape (``\\x1b``).

    Stored text comes from any tool: an escape sequence could clear the screen, a newline could
    print a fake history line, a bidi override could reorder it.
    """
    text = "" if text is None else str(text)
    if not any(_unsafe(char) for char in text):
        return text
    return "".join(_escape(char) if _unsafe(char) else char for char in text)


def json_terminal_safe(text: str) -> str:
    """Return JSON ``text`` with every character a terminal could act on written as a ``\\u``
    escape: the same JSON value, safe to print (``ensure_ascii=False`` leaves C1 controls such
    as U+009B, a CSI, and bidi overrides raw). TAB, LF and CR stay: strict JSON holds them
    only as whitespace between tokens, where an escape would not be JSON."""
    if not any(_unsafe(char) and char not in _JSON_SPACE for char in text):
        return text
    return "".join(
        f"\\u{ord(char):04x}" if _unsafe(char) and char not in _JSON_SPACE else char
        for char in text
    )


_JSON_SPACE = frozenset("\t\n\r")


def _unsafe(char: str) -> bool:
    return char in BIDI_MARKS or forbidden(char)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"
