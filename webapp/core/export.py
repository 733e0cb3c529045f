"""History exports, streamed: CSV and JSON, the same records for the CLI and the web. No Flask.

Rows arrive as an iterator of stored rows (the store reads them a bounded chunk at a time), so an
export of a million changes holds a few hundred in memory. Each row is read by the same rules as
a :class:`~webapp.core.changes.Change` (``decode_metadata``, ``stamp_text``...)
without building one:
this is the one path whose cost is multiplied by every row of the history. CSV cells that a
spreadsheet would run as a formula are neutralised (OWASP); JSON keeps the exact text.
"""

import csv
import io
import json

from webapp.core.changes import decode_metadata, previous_type, stamp_text, stored_text
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.text import json_terminal_safe, terminal_safe

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
FORMULA_CHARS = frozenset(FORMULA_STARTS)
CHUNK_ROWS = 200  # rows per chunk handed to the web server or the terminal
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def cell(value) -> str:
    """Return ``value`` as a CSV cell a spreadsheet shows as text: a leading ``'`` before
    ``= + - @``, tab or carriage return (OWASP's rule against CSV formula injection)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def read_row(row, buckets):
    """Return (id, type, bucket, stamp, who, metadata, metadata JSON, previous) as records show
    them."""
    pipeline_type = stored_text(row["pipeline_type"])
    bucket = buckets.get(pipeline_type) if pipeline_type in PIPELINE_TYPES else None
    metadata, exact = decode_metadata(row["metadata"])
    # Strict JSON as stored is copied as it is; anything else is written from its object.
    text = exact if exact is not None else _encode(metadata)
    return (
        row["id"],
        pipeline_type,
        bucket,
        stamp_text(row["updated_at"]),
        stored_text(row["updated_by"]),
        metadata,
        text,
        previous_type(metadata, row["type_before"]),
    )


def csv_chunks(rows, buckets):
    """Yield the CSV export (header first) as text chunks of ``CHUNK_ROWS`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    write = writer.writerow
    for count, row in enumerate(rows, 1):
        row_id, pipeline_type, bucket, stamp, who, metadata, text, previous = read_row(row, buckets)
        get = metadata.get
        # This loop runs once per row of the whole history: cell() is inlined for plain text.
        write(
            [
                row_id,
                *[
                    ("'" + value if value[:1] in FORMULA_CHARS else value)
                    if value.__class__ is str
                    else cell(value if value is None else json.dumps(value, ensure_ascii=False))
                    for value in (
                        pipeline_type,
                        bucket,
                        stamp,
                        who,
                        get("reason"),
                        previous,
                        get("source"),
                        text,
                    )
                ],
            ]
        )
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(rows, buckets):
    """Yield a JSON array of the records (the keys of ``Change.to_dict()``), in chunks."""
    parts, separator = ["["], ""
    for row in rows:
        row_id, pipeline_type, bucket, stamp, who, _, text, previous = read_row(row, buckets)
        parts.append(
            f'{separator}{{"id":{row_id},"pipeline_type":{_encode(pipeline_type)},'
            f'"bucket":{_encode(bucket)},"managed":{"true" if bucket is not None else "false"},'
            f'"updated_at":{_encode(stamp)},"updated_by":{_encode(who)},"metadata":{text},'
            f'"previous":{_encode(previous)},"default":false}}'
        )
        separator = ","
        if len(parts) >= CHUNK_ROWS:
            yield "".join(parts)
            parts = []
    parts.append("]")
    yield "".join(parts)


def write_csv(rows, buckets, stream, terminal=False) -> None:
    """Write the CSV export of ``rows`` to ``stream`` as it is produced.

    CSV is data, copied exactly to a file or a pipe; to a ``terminal`` each cell is written
    with what a terminal could act on escaped (``\\x1b``, ``\\x0a``), like every other output.
    """
    chunks = csv_chunks(rows, buckets)
    for chunk in _terminal_safe_csv(chunks) if terminal else chunks:
        stream.write(chunk)


def _terminal_safe_csv(chunks):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for chunk in chunks:  # each chunk holds whole rows: read back, escaped cell by cell
        for record in csv.reader(io.StringIO(chunk, newline="")):
            writer.writerow([terminal_safe(value) for value in record])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def write_json(rows, buckets, stream, terminal=False) -> None:
    """Write the JSON array of the records of ``rows`` to ``stream`` as it is produced (to a
    ``terminal``: C1 controls and bidi characters as ``\\u`` escapes, the same JSON values)."""
    for chunk in json_chunks(rows, buckets):
        stream.write(json_terminal_safe(chunk) if terminal else chunk)
