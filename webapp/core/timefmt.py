"""Time as this tool stores, reads and shows it. No Flask, no SQL.

Stored: ``YYYY-MM-DD HH:MM:SS.SSS`` in UTC, the text form of SQLite's ``CURRENT_TIMESTAMP`` with
milliseconds (text comparison then orders it correctly against whole-second rows). Read: that, or
any ISO 8601 form, or Unix seconds (a number stored as a number), since other tools write the
table too. A stored value that is no time this module can represent (year 0 or past 9999, a UTC
time past the calendar's ends, a leap second, 24:00, Unix seconds outside 1970–2100) reads as no
time: shown as the stored text with *unknown time*, never an error. Shown: ISO 8601 UTC.
"""

from datetime import UTC, datetime, timedelta

UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
ONE_MS = timedelta(milliseconds=1)
# The last millisecond a stamp can name: a change after a row stamped there shares its stamp.
LAST = datetime.max.replace(microsecond=999000, tzinfo=UTC)
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
    """Read an ``updated_at`` value as an aware UTC datetime, or None if it is not a time.

    Total: any value a row can hold gives a time or None, never an exception (a time that UTC
    cannot represent, such as ``0001-01-01T00:00:00+01:00``, is None too).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not UNIX_RANGE[0] <= value <= UNIX_RANGE[1]:  # NaN fails both comparisons
            return None
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
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
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        return None


def shown(moment: datetime | None, text, empty="no time recorded (unknown time)") -> str:
    """Return a stored time as a line shows it: ISO 8601 UTC, else the stored text and
    *unknown time* (the dashboard's rule, for the CLI and the webhooks' sentence); ``empty``
    when the row holds nothing."""
    if moment is not None:
        return iso(moment)
    if text is None or text == "":
        return empty
    return f"{text} (unknown time)"


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
