"""What a change is, and the rules of making one: validation, no-op or conflict, time stamps,
the metadata and audit record it carries. No Flask, no SQL: the store applies these rules.
"""

import json
import math
from datetime import datetime
from typing import NamedTuple

from webapp.core import timefmt
from webapp.core.errors import ConflictError, InvalidInput
from webapp.core.pipelines import DEFAULT_PIPELINE, PIPELINE_TYPES, validate_type
from webapp.core.text import MAX_NAME, MAX_REASON, clean_text

SOURCES = ("cli", "web", "api", "fleet")  # fleet: a rollout the node applied (issue 18)
UNMANAGED = "not a type this tool manages"
MAX_METADATA_DEPTH = 32  # deeper JSON from another tool is kept as text, never walked


class Change(NamedTuple):
    """One row of ``pipeline_config`` (or the never-set default when ``id`` is None).

    Rows may come from other tools: ``pipeline_type`` may be unknown or None, ``updated_at`` may
    not be a time (``updated_at_text`` keeps what the row holds), metadata may be anything.
    (Named tuples, not dataclasses: this module is on the CLI's start-up path.)
    """

    id: int | None
    pipeline_type: str | None
    bucket: str | None
    updated_at: datetime | None
    updated_by: str | None
    metadata: dict
    updated_at_text: str | None = None
    type_before: str | None = None  # the type of the row before by id (None: there is none)

    @property
    def is_default(self) -> bool:
        return self.id is None

    @property
    def managed(self) -> bool:
        """True when the type is one of ours (else: written by another tool, no bucket)."""
        return self.pipeline_type in PIPELINE_TYPES

    @property
    def version(self) -> int:
        """The id a compare-and-set must name to replace this change (0 when never set)."""
        return self.id or 0

    @property
    def reason(self) -> str | None:
        return field_text(self.metadata, "reason")

    @property
    def source(self) -> str | None:
        return field_text(self.metadata, "source")

    @property
    def previous(self) -> str | None:
        """The type this change replaced (None: the default): as its metadata records it, else
        (another tool's row) the type of the row before it."""
        return previous_type(self.metadata, self.type_before)

    @property
    def reverts_to(self):
        return self.metadata.get("reverts_to")

    @property
    def type_label(self) -> str:
        """The type as shown to people: an unknown one says so."""
        if self.managed:
            return self.pipeline_type
        shown = "(none)" if self.pipeline_type is None else repr(self.pipeline_type)
        return f"{shown} ({UNMANAGED})"

    def to_dict(self) -> dict:
        """Return the JSON record shared by the CLI, the API, exports and webhooks."""
        return {
            "id": self.id,
            "pipeline_type": self.pipeline_type,
            "bucket": self.bucket,
            "managed": self.managed,
            "updated_at": timefmt.iso(self.updated_at) or self.updated_at_text,
            "updated_by": self.updated_by,
            "metadata": self.metadata,
            "previous": self.previous,
            "default": self.is_default,
        }


class SetResult(NamedTuple):
    """What a set did: the change now current, and whether a row was written."""

    change: Change
    changed: bool

    def to_dict(self) -> dict:
        return {**self.change.to_dict(), "changed": self.changed}


class ChangeRequest(NamedTuple):
    """A validated wish to make ``pipeline_type`` current (see :func:`request_change`)."""

    pipeline_type: str
    updated_by: str
    reason: str | None
    source: str
    expect_id: int | None
    reverts_to: int | None = None
    rollout: int | None = None  # the fleet rollout that asked for it


def request_change(
    pipeline_type,
    *,
    updated_by,
    reason=None,
    source="cli",
    expect_id=None,
    reverts_to=None,
    require_reason=False,
    rollout=None,
) -> ChangeRequest:
    """Check every input of a change; raise :class:`InvalidInput` naming the first bad one."""
    pipeline_type = validate_type(pipeline_type)
    updated_by = clean_text(updated_by, "operator name", MAX_NAME, required=True)
    reason = clean_text(reason, "reason", MAX_REASON, required=require_reason)
    if source not in SOURCES:
        raise InvalidInput(f"invalid source {source!r}: choose one of {', '.join(SOURCES)}")
    if expect_id is not None and (
        isinstance(expect_id, bool) or not isinstance(expect_id, int) or expect_id < 0
    ):
        raise InvalidInput(f"expected id must be a whole number ≥ 0 (got {expect_id!r})")
    return ChangeRequest(pipeline_type, updated_by, reason, source, expect_id, reverts_to, rollout)


def must_insert(request: ChangeRequest, current: Change) -> bool:
    """Decide: True to insert a row, False for a no-op; raise ConflictError on a stale base.

    The compare-and-set is checked first: a caller that saw another version learns of it even
    when the type it wants happens to be current.
    """
    if request.expect_id is not None and current.version != request.expect_id:
        raise ConflictError(describe_conflict(request.expect_id, current), current)
    return current.is_default or current.pipeline_type != request.pipeline_type


def next_timestamp(clock: datetime, newest: datetime | None) -> datetime:
    """Return the time to store: the clock, unless the newest row is not earlier (ties, a clock
    that went back, a row from the future); then one millisecond after that row. So readers that
    order by ``updated_at`` agree with readers that order by id, for every row we write.

    After a row at the calendar's last millisecond (``timefmt.LAST``) no later stamp exists: the
    new row shares that stamp, and readers that break ties by id still agree.
    """
    clock = clock.replace(microsecond=clock.microsecond // 1000 * 1000)
    if newest is None or clock > newest:
        return clock
    newest = newest.replace(microsecond=newest.microsecond // 1000 * 1000)
    return newest + timefmt.ONE_MS if newest < timefmt.LAST else timefmt.LAST


def new_metadata(request: ChangeRequest, current: Change, clock: datetime, stamp: datetime):
    """Return the metadata a new row records (``clock`` only when the stamp had to move)."""
    metadata = {
        "reason": request.reason,
        "previous": None if current.is_default else current.pipeline_type,
        "previous_id": current.id,
        "source": request.source,
    }
    if request.reverts_to is not None:
        metadata["reverts_to"] = request.reverts_to
    if request.rollout is not None:
        metadata["rollout"] = request.rollout
    if stamp != clock.replace(microsecond=clock.microsecond // 1000 * 1000):
        metadata["clock"] = timefmt.iso(clock)
    return metadata


def default_change(buckets) -> Change:
    return Change(None, DEFAULT_PIPELINE, buckets[DEFAULT_PIPELINE], None, None, {})


def describe_conflict(expect_id: int, current: Change) -> str:
    """Explain a compare-and-set refusal: what is current now, who set it and when."""
    if current.is_default:
        return f"pipeline changed since version {expect_id}: nothing has been set yet"
    when = timefmt.shown(current.updated_at, current.updated_at_text, "an unknown time")
    who = current.updated_by or "an unknown operator"
    return (
        f"pipeline changed since version {expect_id}: it is now {current.type_label} "
        f"(change #{current.id}, set by {who} at {when}); nothing was written"
    )


def audit_record(change: Change) -> dict:
    """Return the one-line audit record of a change we wrote."""
    record = {
        "event": "pipeline_change",
        "id": change.id,
        "who": change.updated_by,
        "from": change.previous,
        "to": change.pipeline_type,
        "bucket": change.bucket,
        "reason": change.reason,
        "source": change.source,
        "at": timefmt.iso(change.updated_at),
    }
    if change.reverts_to is not None:
        record["reverts_to"] = change.reverts_to
    return record


def parse_metadata(text) -> dict:
    """Return the metadata as a JSON object that strict JSON can carry, whatever the row holds.

    Not JSON, NaN or Infinity, numbers too large, nesting deeper than ``MAX_METADATA_DEPTH``:
    kept as ``{"unparsed": text}``. JSON that is not an object: ``{"value": value}``.
    """
    return decode_metadata(text)[0]


def decode_metadata(text) -> tuple[dict, str | None]:
    """Return (:func:`parse_metadata`'s object, the stored text when it is that very object in
    strict JSON, so that an export may copy it as it is; else None)."""
    if text is None or text == "":
        return {}, None
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return {"unparsed": text}, None
    if (text.count("[") + text.count("{")) > MAX_METADATA_DEPTH and _depth(value) > (
        MAX_METADATA_DEPTH
    ):
        return {"unparsed": text}, None
    if "\\u" in text and not _encodable(value):  # "\\ud800": a lone surrogate, not Unicode
        return {"unparsed": text}, None
    if isinstance(value, dict):
        return value, text
    return {"value": value}, None


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _refuse(constant):
    raise ValueError(f"{constant} is not JSON")


# One strict decoder, built once (json.loads with options builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_refuse, parse_float=_finite)


def _encodable(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_METADATA_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def field_text(metadata: dict, key: str) -> str | None:
    """Return metadata ``key`` as text (another tool may have stored a number or an object)."""
    value = metadata.get(key)
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def previous_type(metadata: dict, type_before) -> str | None:
    """Return the type a change replaced: its metadata's ``previous`` when recorded, else
    ``type_before`` (the stored type of the row before it, None when it is the first)."""
    if "previous" in metadata:
        return field_text(metadata, "previous")
    return stored_text(type_before)


def stored_text(value) -> str | None:
    """Return a stored value as text: blobs decoded (invalid bytes replaced), numbers written."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def stamp_text(value) -> str | None:
    """Return a stored ``updated_at`` as records show it: ISO 8601 UTC, else as stored."""
    if value.__class__ is str and len(value) == 23 and value[10] == " " and value[19] == ".":
        # Our own form, "YYYY-MM-DD HH:MM:SS.SSS" (UTC): rewritten, once it reads as a time.
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return f"{value[:10]}T{value[11:]}Z"
    return timefmt.iso(timefmt.parse(value)) or stored_text(value)
