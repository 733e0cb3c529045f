"""What a node list may be filtered by, read from a query string (the API's and the pages' alike).

``NodeFilter.from_args(request.args)`` checks every value and raises ``InvalidInput`` with one
line (HTTP 400) for a bad one. No Flask, no SQL: the store turns a filter into a query.
"""

from dataclasses import dataclass, field

from webapp.core.errors import InvalidInput
from webapp.core.labels import parse_labels, split_labels
from webapp.core.text import clean_text, whole_number

from .rollouts.tables import SYNC_STATES
from .schema import STATES

MAX_TYPE = 64
MAX_NAME = 200
PAGE = 50
MAX_PAGE = 500


def parse_selector(text: str | None) -> dict[str, str]:
    """Return the labels ``region=eu,site=berlin`` asks for (all must match): the rules of a
    node's own labels (core/labels.py), so any label a node can have can be selected."""
    return parse_labels(split_labels(text), "selector")


@dataclass(frozen=True)
class NodeFilter:
    """Nodes to list: every condition given must hold. Empty: the whole fleet."""

    selector: dict[str, str] = field(default_factory=dict)
    pipeline_type: str | None = None
    state: str | None = None  # reporting | stale | error, or a sync: in_sync | pending | ...
    name_prefix: str | None = None

    @classmethod
    def from_args(cls, args) -> "NodeFilter":
        """Return the filter a query string (a mapping) asks for; InvalidInput when bad."""
        state = (args.get("state") or "").strip() or None
        if state is not None and state not in STATES + SYNC_STATES:
            raise InvalidInput(f"state must be one of {', '.join(STATES + SYNC_STATES)}")
        return cls(
            selector=parse_selector(args.get("selector")),
            pipeline_type=clean_text(args.get("pipeline_type"), "pipeline_type", MAX_TYPE),
            state=state,
            name_prefix=clean_text(args.get("name_prefix"), "name_prefix", MAX_NAME),
        )

    def to_args(self) -> dict[str, str]:
        """Return the query string that gives this filter back (for links and next pages)."""
        args = {}
        if self.selector:
            args["selector"] = ",".join(f"{k}={v}" for k, v in self.selector.items())
        for name in ("pipeline_type", "state", "name_prefix"):
            if getattr(self, name):
                args[name] = getattr(self, name)
        return args


def page_size(text: str | None, default: int = PAGE) -> int:
    """Return the ``limit`` asked for, 1 to 500; ASCII digits only."""
    if text is None or text == "":
        return default
    return whole_number(text, "limit", 1, MAX_PAGE)


def name_cursor(text: str | None) -> str | None:
    """Return a node-list cursor (the last name of the previous page), checked as a name."""
    return clean_text(text, "before (a cursor)", MAX_NAME)
