"""Which pipeline was active when: segments for the server-rendered SVG timeline. No Flask.

The store answers the two questions needed (what was in force at the window's start, and which
changes happened inside it); this module only turns them into proportional segments and ticks.
"""

from collections import namedtuple
from datetime import datetime, timedelta

WIDTH = 1000  # SVG user units; the viewBox scales it to the page
MIN_WIDTH = 4  # SVG units: about half a percent of the bar
LABEL_MARGIN = 30  # SVG units: a centred label closer to an edge than this would be cut off
MAX_CHANGES = 60  # drawn per window: bounded work, and more would not be readable anyway

Segment = namedtuple("Segment", "pipeline_type start end x width change")
Tick = namedtuple("Tick", "x label")
Timeline = namedtuple("Timeline", "name title start end segments ticks clipped")

WINDOWS = (
    ("day", "Last 24 hours", timedelta(hours=24), timedelta(hours=6), "%H:%M"),
    ("week", "Last 7 days", timedelta(days=7), timedelta(days=1), "%a %d"),
)


def _x(moment: datetime, start: datetime, span: timedelta) -> float:
    return round(WIDTH * ((moment - start) / span), 2)


def build(store, now: datetime, name, title, span, step, label) -> Timeline:
    """Return the timeline of the window ``[now - span, now]``."""
    start = now - span
    inside = store.window(start, MAX_CHANGES + 1)  # newest first; "until now" would drop now
    clipped = len(inside) > MAX_CHANGES
    # Clipped: the oldest change read stands for the state before the ones drawn.
    changes = [inside.pop()] if clipped else [store.active_at(start)]
    changes += [c for c in reversed(inside) if c.id != changes[0].id]
    segments = []
    for index, change in enumerate(changes):
        begin = min(max(change.updated_at or start, start), now)  # a row from the future: now
        end = changes[index + 1].updated_at if index + 1 < len(changes) else now
        end = min(max(end or begin, begin), now)
        x, width = _x(begin, start, span), _x(end, start, span) - _x(begin, start, span)
        # Drawn at least MIN_WIDTH wide (pulled left at the edge) so that a change of the last
        # few minutes shows; later segments are drawn over earlier ones.
        shown = max(width, MIN_WIDTH)
        shown_x = min(x, WIDTH - shown)
        segments.append(
            Segment(change.pipeline_type, begin, end, round(shown_x, 2), round(shown, 2), change)
        )
    first_tick = start.replace(minute=0, second=0, microsecond=0) + step
    if step >= timedelta(days=1):
        first_tick = first_tick.replace(hour=0)
    ticks, moment = [], first_tick
    while moment < now:
        x = _x(moment, start, span)
        if LABEL_MARGIN <= x <= WIDTH - LABEL_MARGIN:
            ticks.append(Tick(x, moment.strftime(label)))
        moment += step
    return Timeline(name, title, start, now, segments, ticks, clipped)


def timelines(store, now: datetime) -> list[Timeline]:
    """Return the 24-hour and 7-day timelines ending at ``now`` (an aware UTC datetime)."""
    now = now.replace(microsecond=0)  # whole seconds: what the table stores and shows
    return [build(store, now, *window) for window in WINDOWS]
