"""Time as this tool stores, reads and shows it. No Flask, no SQL.

Stored: ``YYYY-MM-DD HH:MM:SS.SSS`` in UTC, the text form of SQLite's ``CURRENT_TIMESTAMP`` with
milliseconds (text comparison then orders it correctly against whole-second rows). Read: that, or
any ISO 8601 form, or Unix seconds, since other tools write the table too. Shown: ISO 8601 UTC.
"""

from datetime import UTC, datetime, timedelta

UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
ONE_MS = timedelta(milliseconds=1)
# Unix seconds a row may plausibly hold (1970 to 2100); other numbers are not times.
UNIX_RANGE = (0, 4_102_444_800)


def stored(moment: datetime) -> str:
    """Format ``moment`` as stored in ``updated_at``: UTC, milliseconds."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def bound(moment: datetime) -> str:
    """Format a filter bound so text comparison treats whole-second and millisecond rows alike.

    ``'… 10:00:00' < '… 10:00:00.000'`` as text, so a bound on a whole second is written without
    milliseconds: both forms of that second then compare as not earlier than it.
    """
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    if moment.microsecond // 1000 == 0:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return stored(moment)


def parse(value) -> datetime | None:
    """Read an ``updated_at`` value as an aware UTC datetime, or None if it is not a time."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not UNIX_RANGE[0] <= value <= UNIX_RANGE[1]:  # NaN fails both comparisons
            return None
        return datetime.fromtimestamp(value, UTC)
    text = value if isinstance(value, str) else str(value)
    try:
        moment = datetime.fromisoformat(text)  # our own form, at once (the common case)
    except ValueError:
        text = text.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """Format ``moment`` as ISO 8601 UTC with milliseconds and ``Z`` (sorts as text, too)."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" → "Z"


def utc(moment: datetime | None) -> str:
    """Format an aware time for people: ``2026-11-25 10:00:00 UTC`` (``iso`` is for machines)."""
    return iso(moment)[:19].replace("T", " ") + " UTC" if moment else ""


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """Return a rough age such as "5 minutes ago" (largest unit only)."""
    if moment is None:
        return "unknown time"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < -5:
        return "in the future"
    if seconds < 5:
        return "just now"
    for unit, size in UNITS:
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
