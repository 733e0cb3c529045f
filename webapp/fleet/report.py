"""A node's report, read from hostile bytes: strict JSON, then every field under the text rules.

``parse_body`` turns the body into a JSON object (UTF-8, no NaN or Infinity, no duplicate keys,
nesting ≤ 32) and ``read_report`` checks it field by field; both raise ``ReportRefused`` with
the reason the protocol names (``malformed_json`` or ``invalid_report``) and one line. The
signature is checked between the two (ingest.py), once the body names its node. No SQL, no Flask.
"""

import json
from dataclasses import dataclass

from webapp.accounts.users import name_problem
from webapp.core.errors import InvalidInput
from webapp.core.labels import MAX_LABELS, label_key_problem, label_value
from webapp.core.text import clean_text

from .filters import MAX_TYPE

MAX_BODY = 1 << 20
MAX_DEPTH = 32
MAX_NODE_NAME = 64
MAX_CHANGES = 500
MAX_ID = 2**63 - 1
MIN_INTERVAL, MAX_INTERVAL = 5, 86_400
MAX_AGENT = 100
MAX_WHO = 200
MAX_STAMP = 64
MAX_MESSAGE = 2000


class ReportRefused(Exception):
    """A report the centre will not store: ``reason`` for metrics and the answer, one line."""

    def __init__(self, reason: str, message: str, status: int = 400):
        super().__init__(message)
        self.reason = reason
        self.status = status


def invalid(message: str) -> ReportRefused:
    return ReportRefused("invalid_report", message)


@dataclass(frozen=True)
class Report:
    """A checked report. ``current`` is the record or ``{"error": ...}`` as the node sent it."""

    node: str
    labels: dict
    interval_s: int
    agent: str | None
    seq: int
    current: dict
    changes: list
    accept_rollouts: bool = False
    rollout: dict | None = None

    @property
    def error(self) -> bool:
        return "error" in self.current

    @property
    def record(self) -> dict | None:
        return None if self.error else self.current

    @property
    def newest_id(self) -> int | None:
        """The newest change id the report shows (its current record's or its changes')."""
        ids = [change["id"] for change in self.changes]
        if self.record is not None:
            ids.append(self.record["id"] or 0)  # a never-set database: no change yet
        return max(ids) if ids else None


def _no_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ReportRefused("malformed_json", "the JSON object repeats a key")
    return dict(pairs)


def _no_constants(name):
    raise ReportRefused("malformed_json", f"{name} is not JSON")


def parse_body(body: bytes) -> dict:
    """Return the body as a JSON object, or raise ReportRefused("malformed_json")."""
    if len(body) > MAX_BODY:
        raise ReportRefused("too_large", f"the body is larger than {MAX_BODY} bytes", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReportRefused(
            "malformed_json", f"the body is not UTF-8 (byte {error.start})"
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise ReportRefused("malformed_json", f"JSON nested deeper than {MAX_DEPTH}") from None
    except ValueError as error:
        raise ReportRefused("malformed_json", f"the body is not JSON ({error})") from None
    if depth(value) > MAX_DEPTH:
        raise ReportRefused("malformed_json", f"JSON nested deeper than {MAX_DEPTH}")
    if not isinstance(value, dict):
        raise ReportRefused("malformed_json", "the body must be a JSON object")
    return value


def depth(value) -> int:
    """Return how deeply ``value`` nests lists and objects (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def node_name(body: dict) -> str:
    """Return the report's node name if it is an account name of ≤ 64 characters."""
    name = body.get("node")
    if not isinstance(name, str):
        raise invalid("node must be the node's name")
    problem = name_problem(name) or (
        f"is longer than {MAX_NODE_NAME} characters" if len(name) > MAX_NODE_NAME else None
    )
    if problem:
        raise invalid(f"node {name[:MAX_NODE_NAME]!r} {problem}")
    return name


def is_node_name(name) -> bool:
    """Return True if ``name`` could be a node's name (a URL's text never reaches the store
    otherwise: PostgreSQL refuses a NUL in text)."""
    try:
        node_name({"node": name})
    except ReportRefused:
        return False
    return True


def whole(value, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{field} must be a whole number from {low} to {high}")
    return value


def text(value, field: str, limit: int) -> str | None:
    try:
        return clean_text(value, field, limit)
    except InvalidInput as error:
        raise invalid(str(error)) from None


def read_labels(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_LABELS:
        raise invalid(f"labels must be an object of at most {MAX_LABELS} labels")
    for key, item in value.items():
        problem = label_key_problem(key)
        if problem:
            raise invalid(f"label key {key[:63]!r} {problem}")
        try:
            label_value(item, key)
        except InvalidInput as error:
            raise invalid(str(error)) from None
    return dict(sorted(value.items()))


def stored(value, field: str, limit: int) -> str | None:
    """Check a value a node's table holds: text or null, bounded. Not the text rules: a row
    another tool wrote may hold a control character, and refusing it would block the node's
    every later report; pages and exports escape what they show. NUL and lone surrogates are
    refused: no store can keep them as text."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise invalid(f"{field} must be text of at most {limit} characters, or null")
    if "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value):
        raise invalid(f"{field} holds a NUL or a lone surrogate")
    return value


def read_record(value, field: str) -> dict:
    """Check a record as ``get --json`` prints it (the centre stores and shows its fields).

    A never-set database reports its default record: ``"id": null`` with ``"default": true``.
    """
    if not isinstance(value, dict):
        raise invalid(f"{field} must be a record object")
    if not (value.get("id") is None and value.get("default") is True):
        whole(value.get("id"), f"{field}.id", 0, MAX_ID)
    for name, limit in (
        ("pipeline_type", MAX_TYPE),
        ("bucket", MAX_TYPE),
        ("updated_at", MAX_STAMP),
        ("updated_by", MAX_WHO),
    ):
        stored(value.get(name), f"{field}.{name}", limit)
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid(f"{field}.metadata must be an object")
    for name in ("reason", "source", "previous"):  # what pages show of the metadata
        item = (metadata or {}).get(name)
        if isinstance(item, str):
            stored(item, f"{field}.metadata.{name}", MAX_MESSAGE)
    return value


def read_current(value) -> dict:
    if isinstance(value, dict) and set(value) == {"error"}:
        error = value["error"]
        if not isinstance(error, dict):
            raise invalid('current.error must be {"code": N, "message": "..."}')
        whole(error.get("code"), "current.error.code", 0, 255)
        text(error.get("message"), "current.error.message", MAX_MESSAGE)
        return value
    return read_record(value, "current")


def read_changes(value) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_CHANGES:
        raise invalid(f"changes must be a list of at most {MAX_CHANGES} records")
    records = [read_record(item, f"changes[{n}]") for n, item in enumerate(value)]
    if any(record["id"] is None for record in records):
        raise invalid("a change must have an id (only a never-set current record has none)")
    ids = [record["id"] for record in records]
    if any(later <= earlier for earlier, later in zip(ids, ids[1:], strict=False)):
        raise invalid("changes must be in ascending id order, oldest first")
    return records


def read_report(body: dict) -> Report:
    """Return the checked report in ``body`` (a JSON object), or raise ReportRefused."""
    rollout = body.get("rollout")
    if rollout is not None and not isinstance(rollout, dict):
        raise invalid("rollout must be an object or null")
    accept = body.get("accept_rollouts", False)
    if not isinstance(accept, bool):
        raise invalid("accept_rollouts must be true or false")
    return Report(
        node=node_name(body),
        labels=read_labels(body.get("labels")),
        interval_s=whole(body.get("interval_s"), "interval_s", MIN_INTERVAL, MAX_INTERVAL),
        agent=text(body.get("agent"), "agent", MAX_AGENT),
        seq=whole(body.get("seq", 0), "seq", 0, MAX_ID),
        current=read_current(body.get("current")),
        changes=read_changes(body.get("changes")),
        accept_rollouts=accept,
        rollout=rollout,
    )
