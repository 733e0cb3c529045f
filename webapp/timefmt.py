"""Time formatting for templates: ISO 8601 in UTC, and "how long ago"."""

from datetime import UTC, datetime

from .store import iso_utc

UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def iso(moment: datetime | None) -> str:
    """Return ``moment`` as ISO 8601 UTC, or an empty string."""
    return iso_utc(moment) or ""


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """Return a rough age such as "5 minutes ago" (largest unit only)."""
    if moment is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 5:
        return "just now"
    for unit, size in UNITS:
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
