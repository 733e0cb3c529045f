"""History exports, streamed: CSV and JSON, the same records for the CLI and the web. No Flask.

Rows arrive as an iterator (the store reads them a bounded chunk at a time), so an export of a
million changes holds a few hundred in memory. CSV cells that a spreadsheet would run as a
formula are neutralised (OWASP); JSON keeps the exact text.
"""

import csv
import io
import json

from .timefmt import iso

CSV_FIELDS = (
    "id",
    "pipeline_type",
    "bucket",
    "updated_at",
    "updated_by",
    "reason",
    "previous",
    "source",
    "metadata",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 200  # rows per chunk handed to the web server


def cell(value) -> str:
    """Return ``value`` as a CSV cell a spreadsheet shows as text: a leading ``'`` before
    ``= + - @``, tab or carriage return (OWASP's rule against CSV formula injection)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(change) -> list:
    return [
        change.id,
        cell(change.pipeline_type),
        cell(change.bucket),
        cell(iso(change.updated_at) or change.updated_at_text),
        cell(change.updated_by),
        cell(change.reason),
        cell(change.previous),
        cell(change.source),
        cell(json.dumps(change.metadata, ensure_ascii=False, allow_nan=False)),
    ]


def write_csv(changes, stream) -> None:
    """Write changes as CSV rows with a header (metadata as JSON in the last column)."""
    writer = csv.writer(stream)
    writer.writerow(CSV_FIELDS)
    for change in changes:
        writer.writerow(csv_row(change))


def csv_chunks(changes):
    """Yield the CSV export as text chunks of ``CHUNK_ROWS`` rows (for a streamed response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for count, change in enumerate(changes, 1):
        writer.writerow(csv_row(change))
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(changes):
    """Yield a JSON array of the records (``Change.to_dict()``), in chunks."""
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    parts, separator = ["["], ""
    for change in changes:
        parts.append(separator + encode(change.to_dict()))
        separator = ","
        if len(parts) >= CHUNK_ROWS:
            yield "".join(parts)
            parts = []
    parts.append("]")
    yield "".join(parts)


def write_json(changes, stream) -> None:
    """Write the JSON array of the records to ``stream`` as it is produced."""
    for chunk in json_chunks(changes):
        stream.write(chunk)
