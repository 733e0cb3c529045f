"""History as CSV, the same records for the CLI and for /history.csv. No Flask."""

import csv
import json

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


def write_csv(changes, stream) -> None:
    """Write changes as CSV rows with a header (metadata as JSON in the last column)."""
    writer = csv.writer(stream)
    writer.writerow(CSV_FIELDS)
    for change in changes:
        record = change.to_dict()
        writer.writerow(
            [
                record["id"],
                record["pipeline_type"],
                record["bucket"],
                record["updated_at"],
                record["updated_by"],
                change.reason,
                change.previous,
                change.source,
                json.dumps(change.metadata, ensure_ascii=False),
            ]
        )
