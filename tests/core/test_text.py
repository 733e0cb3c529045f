"""Text rules (webapp/text.py): what may be stored, and how stored text reaches a terminal."""

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.core.errors import InvalidInput
from webapp.core.text import (
    BIDI_CONTROLS,
    MAX_REASON,
    clean_text,
    json_terminal_safe,
    terminal_safe,
)

REFUSED = [
    ("new\nline", "U+000A"),
    ("carriage\rreturn", "U+000D"),
    ("tab\there", "U+0009"),
    ("nul\x00byte", "U+0000"),
    ("escape\x1b[2J", "U+001B"),
    ("delete\x7f", "U+007F"),
    ("c1\x85next-line", "U+0085"),
    ("c1\x9bcsi", "U+009B"),
    ("line\u2028separator", "U+2028"),
    ("paragraph\u2029separator", "U+2029"),
    ("abc\u202edcba", "U+202E"),
    ("isolate\u2066x\u2069", "U+2066"),
    ("lone \udce9 surrogate", "not valid Unicode"),
]


@pytest.mark.parametrize("value, fragment", REFUSED)
def test_refused_text_names_the_field_and_the_character(value, fragment):
    with pytest.raises(InvalidInput) as caught:
        clean_text(value, "reason", MAX_REASON)
    message = str(caught.value)
    assert message.startswith("reason must be one line of plain text")
    assert fragment in message
    assert message.isprintable()  # the message itself is safe to print anywhere


@pytest.mark.parametrize(
    "value", ["café", "日本語の理由", "emoji 🚀 ok", "zero\u200bwidth", "a" * MAX_REASON, "ﷺ"]
)
def test_plain_unicode_is_kept(value):
    assert clean_text(f"  {value}  ", "reason", MAX_REASON) == value


def test_limits_and_required():
    assert clean_text("   ", "reason", 10) is None
    assert clean_text(None, "reason", 10) is None
    with pytest.raises(InvalidInput, match="reason is required"):
        clean_text(" ", "reason", 10, required=True)
    with pytest.raises(InvalidInput, match=r"too long \(11 characters, at most 10\)"):
        clean_text("x" * 11, "reason", 10)
    with pytest.raises(InvalidInput, match="must be text"):
        clean_text(12, "reason", 10)


def is_refused_char(char):
    return char in BIDI_CONTROLS or unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"}


EDGE_CHARACTERS = ["\n", "\r\n", "\t", "\x1c", "\x1f", "\x85", "\u2028", "\u2029", "\x0b", "\x0c"]


@given(
    st.one_of(
        st.text(max_size=50),
        # Refused characters at the ends, where str.strip() would have removed them (15.8).
        st.tuples(st.sampled_from(EDGE_CHARACTERS), st.text(max_size=10), st.booleans()).map(
            lambda t: t[0] + t[1] if t[2] else t[1] + t[0]
        ),
    )
)
def test_clean_text_accepts_exactly_the_text_without_refused_characters(value):
    """The rule is applied to the text as given, before any stripping (issue 15.8)."""
    try:
        cleaned = clean_text(value, "reason", MAX_REASON)
    except InvalidInput:
        assert any(is_refused_char(char) for char in value)
    else:
        assert cleaned == (value.strip() or None)
        assert not any(is_refused_char(char) for char in value)
        json.dumps(cleaned, ensure_ascii=False).encode("utf-8")  # storable and printable


@pytest.mark.parametrize("edge", EDGE_CHARACTERS)
def test_refused_characters_at_either_end_are_refused_not_stripped(edge):
    for value in (f"{edge}why", f"why{edge}"):
        with pytest.raises(InvalidInput, match="must be one line of plain text"):
            clean_text(value, "reason", MAX_REASON)


@given(st.text())
def test_terminal_safe_output_holds_nothing_a_terminal_acts_on(value):
    shown = terminal_safe(value)
    assert not any(is_refused_char(char) for char in shown)
    assert "\n" not in shown and "\x1b" not in shown
    shown.encode("utf-8")  # no lone surrogate left
    if not any(is_refused_char(char) for char in value):
        assert shown == value


def test_terminal_safe_escapes_readably():
    assert terminal_safe("a\x1b[2Jb\nc\u202e") == "a\\x1b[2Jb\\x0ac\\u202e"
    assert terminal_safe(None) == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_json_for_terminals_is_the_same_value_with_nothing_a_terminal_acts_on(value):
    """Issue 15.13: --json output and the audit line carry no raw C1 control or bidi override."""
    text = json.dumps(value, ensure_ascii=False)
    shown = json_terminal_safe(text)
    assert json.loads(shown) == value
    assert not any(is_refused_char(char) or char in "\u200e\u200f\u061c" for char in shown)
