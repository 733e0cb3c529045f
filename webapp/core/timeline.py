"""Which pipeline was active when: segments for the server-rendered SVG timeline. No Flask.

The store answers the two questions needed (what was in force at the window's start, and which
changes happened inside it); this module only turns them into proportional segments and ticks.
Positions are percentages of the bar, so the SVG needs no viewBox and its labels keep their
size on a phone instead of shrinking with the drawing.

Rows other tools wrote may name a type we do not manage (drawn as ``other``), hold no readable
time (not drawn, listed), or a time in the future (drawn at now, flagged). The segment in force
at "now" is always the current change (newest by id), as the uploader sees it.
"""

from collections import namedtuple
from datetime import datetime, timedelta

from webapp.core import timefmt
from webapp.core.timefmt import utc

WIDTH = 100.0  # percent of the bar
MIN_WIDTH = 0.8  # percent: a change of the last few minutes still shows (3 px on a phone)
LABEL_MARGIN = 10.0  # percent: a centred label closer to an edge would be cut off on a phone
MAX_CHANGES = 60  # drawn per window: bounded work, and more would not be readable anyway
FUTURE = timedelta(seconds=5)  # later than now by more than this is "in the future", as in ago()

# kind: the change's type if we manage it, else "other" (never a stored value: it is a class).
# note: None, "future" (dated after now, drawn at now) or "untimed" (current, time unreadable).
# title: what the segment's tooltip says, written here once rather than in the template.
Segment = namedtuple("Segment", "kind start end x width change note title")
# minor: hidden on narrow screens, where every label would not fit.
Tick = namedtuple("Tick", "x label minor")
# summary: the whole bar in words, for screen readers.
Timeline = namedtuple("Timeline", "name title start end segments ticks clipped unplaced summary")

WINDOWS = (
    # Changes minutes apart are one pixel apart in a day: the last hour tells them apart.
    ("hour", "Last hour", timedelta(hours=1), timedelta(minutes=15), "%H:%M UTC"),
    ("day", "Last 24 hours", timedelta(hours=24), timedelta(hours=6), "%H:%M UTC"),
    ("week", "Last 7 days", timedelta(days=7), timedelta(days=1), "%a %d UTC"),
)


def _x(moment: datetime, start: datetime, span: timedelta) -> float:
    return round(WIDTH * ((moment - start) / span), 2)


def kind(change) -> str:
    return change.pipeline_type if change.managed else "other"


def build(store, now: datetime, current, widest, name, title, span, step, label) -> Timeline:
    """Return the timeline of the window ``[now - span, now]``.

    ``widest`` is what the store read for the widest window (newest first, at most
    ``MAX_CHANGES + 1``): a narrower window takes its part of it, compared as the store compares
    (the stored text against the bound). That part is complete unless it is all of ``widest``.
    """
    start = now - span
    bound = timefmt.bound(start)
    inside = [c for c in widest if (c.updated_at_text or "") >= bound]
    clipped = len(inside) > MAX_CHANGES
    # Clipped: the oldest change read stands for the state before the ones drawn.
    first = inside.pop() if clipped else store.active_at(start)
    later = [c for c in reversed(inside) if c.id != first.id]
    unplaced = [c for c in later if c.updated_at is None and c.id != current.id]
    changes = [first] + [c for c in later if c.updated_at is not None]
    if changes[-1].id != current.id:
        # The newest row by id is what the uploader applies now, whatever its time says.
        changes = [c for c in changes if c.id != current.id] + [current]
    placed = []
    for index, change in enumerate(changes):
        # No readable time: the state before the window if first, else in force from now.
        begin = change.updated_at or (start if index == 0 else now)
        begin = min(max(begin, start), now)
        end = changes[index + 1].updated_at if index + 1 < len(changes) else now
        end = min(max(end or now, begin), now)
        x, width = _x(begin, start, span), _x(end, start, span) - _x(begin, start, span)
        # Drawn at least MIN_WIDTH wide (pulled left at the edge); later segments are drawn
        # over earlier ones.
        shown = max(width, MIN_WIDTH)
        placed.append((change, begin, end, round(min(x, WIDTH - shown), 2), round(shown, 2)))
    segments, hidden, covered_from = [], 0, WIDTH
    # From the newest back: later segments cover the bar from their start to its end, so an
    # earlier one that starts inside that part cannot be seen (many changes in one moment).
    for change, begin, end, shown_x, shown in reversed(placed):
        note = None
        if change.updated_at is None and not change.is_default:
            note = "untimed"
        elif change.updated_at is not None and change.updated_at > now + FUTURE:
            note = "future"
        if shown_x >= covered_from and note is None:
            hidden += 1
            continue
        covered_from = min(covered_from, shown_x)
        tooltip = f"{change.type_label} from {utc(begin)} to {utc(end)}"
        if change.updated_by:
            tooltip += f" (set by {change.updated_by})"
        segments.append(Segment(kind(change), begin, end, shown_x, shown, change, note, tooltip))
    segments.reverse()
    summary = f"{title}, times in UTC: " + ", ".join(
        f"{s.change.type_label} from {utc(s.start)}" for s in segments
    )
    if hidden:
        summary += f"; {hidden} earlier changes too close together to draw (see History)"
    return Timeline(
        name,
        title,
        start,
        now,
        segments,
        ticks(start, now, span, step, label),
        clipped,
        unplaced,
        summary,
    )


def ticks(start: datetime, now: datetime, span: timedelta, step: timedelta, label) -> list[Tick]:
    """Return the labelled ticks inside the window, on multiples of ``step`` from midnight."""
    # Multiples of the step from midnight UTC (00:00, 06:00, ...; each midnight for days).
    moment = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while moment <= start:
        moment += step
    moments = []
    while moment < now:
        if LABEL_MARGIN <= _x(moment, start, span) <= WIDTH - LABEL_MARGIN:
            moments.append(moment)
        moment += step
    crowded = len(moments) > 4
    return [
        Tick(_x(moment, start, span), moment.strftime(label), crowded and index % 2 == 1)
        for index, moment in enumerate(moments)
    ]


def timelines(store, now: datetime, current=None) -> list[Timeline]:
    """Return the 1-hour, 24-hour and 7-day timelines ending at ``now`` (an aware UTC datetime).

    ``current`` is the change in force, when the caller has read it already.
    """
    now = now.replace(microsecond=0)  # whole seconds: what the table stores and shows
    current = current or store.current()
    # One read for both windows: the day's changes are the newest of the week's.
    widest = store.window(now - max(window[2] for window in WINDOWS), MAX_CHANGES + 1)
    return [build(store, now, current, widest, *window) for window in WINDOWS]
