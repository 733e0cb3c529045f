"""The fleet at a glance, as drawings: a bar per pipeline type (how many nodes run it) and the mix
over the last days (how many nodes ran each type, a stacked column a day). No Flask.

Like the node's timeline (webapp/core/timeline.py), horizontal positions are percentages and the
SVG has no viewBox, so labels keep their size on a phone; heights are pixels. Every drawn part
carries its own title (a tooltip, and what a screen reader says), and each drawing a summary.
Classes come from :func:`kind_of`, never from a stored value.
"""

import math
from collections import namedtuple

from webapp.core.pipelines import PIPELINE_TYPES

KINDS = (*PIPELINE_TYPES, "other")  # "other": a type this tool does not manage
WIDTH = 100.0  # percent
HEIGHT = 120  # px: the tallest column
MIN_HEIGHT = 2  # px: one node among thousands still shows
MIN_WIDTH = 0.8  # percent: one node in a large fleet still shows in its type's bar
GAP = 2.0  # percent between two days' columns

# A type's line of the overview: its count, its share of the fleet (the bar) and the buckets
# its nodes upload to (nodes may name different ones: each node has its own settings).
TypeBar = namedtuple("TypeBar", "kind label count width buckets title")
# One part of a day's column: ``kind``'s nodes, from ``y`` (px from the top) down.
Block = namedtuple("Block", "kind count y height title")
Column = namedtuple("Column", "day label x width center total blocks minor")
Mix = namedtuple("Mix", "columns peak height summary")


def kind_of(pipeline_type) -> str:
    """Return the drawing class of a stored type: ours, or "other"."""
    return pipeline_type if pipeline_type in PIPELINE_TYPES else "other"


def by_kind(counts: dict) -> dict[str, int]:
    """Fold ``{type: count}`` into ``{kind: count}`` in display order (unknown types: other)."""
    folded = dict.fromkeys(KINDS, 0)
    for pipeline_type, count in counts.items():
        folded[kind_of(pipeline_type)] += int(count)
    return folded


def nodes(count: int) -> str:
    return f"{count} node{'' if count == 1 else 's'}"


def type_bars(by_type: dict, buckets: dict | None = None) -> list[TypeBar]:
    """Return a bar per kind (ours always, "other" only when a node runs one).

    ``buckets`` maps a type to the bucket names its nodes reported, most used first.
    """
    counts = by_kind(by_type)
    total = sum(counts.values())
    bars = []
    for kind, count in counts.items():
        if kind == "other" and not count:
            continue
        width = 0.0 if not count else max(round(WIDTH * count / total, 2), MIN_WIDTH)
        names = list((buckets or {}).get(kind, ()))
        label = kind if kind != "other" else "other types"
        share = f" ({round(100 * count / total)} %)" if total else ""
        title = f"{label}: {nodes(count)}{share}"
        if names:
            title += ", bucket " + ", ".join(names)
        bars.append(TypeBar(kind, label, count, width, names, title))
    return bars


def day_mix(days: list, label_format: str = "%a %d") -> Mix:
    """Return the stacked columns of ``days``: ``[(date, {type: count}), ...]``, oldest first."""
    totals = [sum(by_kind(counts).values()) for _, counts in days]
    peak = max(totals, default=0)
    count = len(days)
    # Rounded down: the last column's right edge stays inside the drawing.
    width = math.floor((WIDTH - GAP * (count - 1)) / count * 100) / 100 if count else 0.0
    crowded = count > 4
    columns, said = [], []
    for index, (day, counts) in enumerate(days):
        label = day.strftime(label_format)
        x = round(index * (width + GAP), 2)
        blocks, bottom = [], HEIGHT
        for kind, kind_count in by_kind(counts).items():
            if not kind_count:
                continue
            height = max(round(HEIGHT * kind_count / peak, 2), MIN_HEIGHT)
            bottom = round(bottom - height, 2)
            what = kind if kind != "other" else "a type this tool does not manage"
            blocks.append(
                Block(kind, kind_count, bottom, height, f"{label}: {nodes(kind_count)} ran {what}")
            )
        parts = ", ".join(f"{b.kind} {b.count}" for b in blocks) or "no node reported"
        said.append(f"{label}: {parts}")
        minor = crowded and (count - 1 - index) % 2 == 1  # today always keeps its label
        columns.append(
            Column(day, label, x, width, round(x + width / 2, 2), totals[index], blocks, minor)
        )
    summary = "Nodes by pipeline type each day (UTC): " + "; ".join(said)
    return Mix(columns, peak, HEIGHT, summary)
