"""A new rollout, read from hostile input, and its waves: which node goes in which wave.

``read_new_rollout(body)`` checks the API's body (or the page's form, as the same dict) and
returns a ``NewRollout``; ``wave_sizes`` turns the cumulative targets (counts or percentages) into
each wave's end; ``wave_order`` fixes the order nodes are taken in, from a hash of the rollout id
and the node's name, so the same rollout always picks the same canary. No SQL, no Flask.
"""

import hashlib
import math
from dataclasses import dataclass

from webapp.core.errors import InvalidInput
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.text import clean_text

from ..filters import parse_selector

DEFAULT_WAVES = (1, "10%", "100%")
DEFAULT_TIMEOUT_S = 900
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 10, 7 * 86_400
MAX_WAVES = 20
MAX_COUNT = 10_000_000
MAX_REASON = 2000
MAX_SELECTOR = 10_000
MAX_NAMES = 1000  # names in one resume's skip or retry


@dataclass(frozen=True)
class NewRollout:
    """What an operator asked for; ``selector`` is canonical ("" = every node)."""

    selector: str
    labels: dict
    pipeline_type: str
    reason: str
    waves: tuple
    wave_timeout_s: int
    revert_of: int | None = None
    previous_type: str | None = None


def canonical_selector(labels: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def read_target(value, position: int):
    """Return a wave target: a count (int ≥ 1) or a percentage text "N%" (1-100)."""
    where = f"waves[{position}]"
    if isinstance(value, bool):
        raise InvalidInput(f'{where} must be a count or a percentage like "10%"')
    if isinstance(value, int):
        if not 1 <= value <= MAX_COUNT:
            raise InvalidInput(f"{where} must be a count from 1 to {MAX_COUNT}")
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text.removesuffix("%")
        if digits.isascii() and digits.isdigit() and len(digits) <= 3:
            if text.endswith("%") and 1 <= int(digits) <= 100:
                return f"{int(digits)}%"
            if not text.endswith("%") and int(digits) >= 1:
                return int(digits)
    raise InvalidInput(f'{where} must be a count or a percentage from "1%" to "100%"')


def read_waves(value) -> tuple:
    if value is None:
        return DEFAULT_WAVES
    if isinstance(value, str):  # the page's field: "1, 10%, 100%"
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_WAVES:
        raise InvalidInput(f"waves must be a list of 1 to {MAX_WAVES} cumulative targets")
    return tuple(read_target(item, n) for n, item in enumerate(value))


def whole(value, field: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) <= 9 else high + 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{field} must be a whole number from {low} to {high}")
    return value


def read_new_rollout(body) -> NewRollout:
    """Return the rollout ``body`` (a JSON object) asks for; InvalidInput (400) names the field."""
    if not isinstance(body, dict):
        raise InvalidInput('body must be a JSON object like {"pipeline_type": "filtered", ...}')
    known = {"selector", "pipeline_type", "reason", "waves", "wave_timeout_s", "revert_of"}
    unknown = sorted(str(key)[:40] for key in body if key not in known | {"previous_type"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    selector = body.get("selector") or ""
    if not isinstance(selector, str) or len(selector) > MAX_SELECTOR:
        raise InvalidInput(f"selector must be text like region=eu,site=berlin (≤ {MAX_SELECTOR})")
    labels = parse_selector(selector)
    pipeline_type = body.get("pipeline_type")
    if pipeline_type not in PIPELINE_TYPES:
        raise InvalidInput(f"pipeline_type must be one of {', '.join(PIPELINE_TYPES)}")
    reason = clean_text(body.get("reason"), "reason", MAX_REASON, required=True)
    timeout = body.get("wave_timeout_s")
    timeout = DEFAULT_TIMEOUT_S if timeout in (None, "") else timeout
    revert_of = body.get("revert_of")
    revert_of = None if revert_of in (None, "") else whole(revert_of, "revert_of", 1, 2**31 - 1)
    previous_type = clean_text(body.get("previous_type"), "previous_type", 64)
    return NewRollout(
        selector=canonical_selector(labels),
        labels=labels,
        pipeline_type=pipeline_type,
        reason=reason,
        waves=read_waves(body.get("waves")),
        wave_timeout_s=whole(timeout, "wave_timeout_s", MIN_TIMEOUT_S, MAX_TIMEOUT_S),
        revert_of=revert_of,
        previous_type=previous_type,
    )


def wave_sizes(targets, total: int) -> list[int]:
    """Return each wave's cumulative end for ``total`` selected nodes (empty waves dropped).

    A percentage rounds up (10 % of 5 nodes is 1 node, never 0); a count past the selection
    stops at it. The last target must reach every selected node.
    """
    ends = []
    for position, target in enumerate(targets):
        if isinstance(target, str):
            end = math.ceil(total * int(target[:-1]) / 100)
        else:
            end = min(target, total)
        if ends and end < ends[-1]:
            raise InvalidInput(
                f"waves are cumulative: waves[{position}] ({target}) selects fewer nodes "
                f"({end}) than the wave before ({ends[-1]})"
            )
        ends.append(end)
    if not ends or ends[-1] < total:
        raise InvalidInput(
            f'the last wave must reach every selected node ({total}): end with "100%"'
        )
    sizes = []
    for end in ends:
        if end and (not sizes or end > sizes[-1]):
            sizes.append(end)
    return sizes


def wave_order(rollout_id: int, names) -> list[str]:
    """Return ``names`` in the order the rollout takes them (a hash of id and name)."""

    def rank(name: str) -> bytes:
        return hashlib.sha256(f"{rollout_id}\x00{name}".encode()).digest()

    return sorted(names, key=rank)


def wave_of(position: int, sizes: list[int]) -> int:
    """Return the wave (0-based) of the node at ``position`` in the wave order."""
    return next(wave for wave, end in enumerate(sizes) if position < end)


def read_names(value, field: str) -> list[str]:
    """Return the node names of a resume's ``skip`` or ``retry`` (a list of names)."""
    if value is None or value == []:
        return []
    if isinstance(value, str):  # the page's field: names separated by commas or spaces
        value = value.replace(",", " ").split()
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise InvalidInput(f"{field} must be a list of at most {MAX_NAMES} node names")
    names = []
    for item in value:
        name = clean_text(item, f"{field} (a node name)", 64, required=True)
        if name not in names:
            names.append(name)
    return names
