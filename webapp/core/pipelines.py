"""Pipeline rules: the four pipeline types and the bucket each one uploads to.

Pure data and functions: no Flask, no SQL, so the uploader can import this module on its own.
"""

from collections.abc import Mapping

from webapp.core.errors import InvalidInput

#: Pipeline types, in the order they are shown to operators.
PIPELINE_TYPES = ("raw", "schematized", "filtered", "aggregated")

#: The type the uploader applies while nobody has ever set one.
DEFAULT_PIPELINE = "raw"

DEFAULT_BUCKETS = {
    "raw": "ingestion",
    "schematized": "validated",
    "filtered": "enriched",
    "aggregated": "aggregated",
}

DESCRIPTIONS = {
    "raw": "No processing, all data uploaded",
    "schematized": "Schema validation and enrichment",
    "filtered": "Business rule filtering",
    "aggregated": "Time-window aggregation with anomaly detection",
}

BUCKET_ENV_PREFIX = "PIPELINE_BUCKET_"


def validate_type(value, accepted=PIPELINE_TYPES) -> str:
    """Return ``value`` as a pipeline type, or raise :class:`InvalidInput` naming the valid ones.

    ``accepted`` narrows the choice further when a table's CHECK allows fewer of our types.
    """
    if isinstance(value, str) and value in PIPELINE_TYPES and value in accepted:
        return value
    shown = repr(value) if isinstance(value, str) and value.isprintable() else "given"
    if isinstance(value, str) and value in PIPELINE_TYPES:
        settable = [name for name in accepted if name in PIPELINE_TYPES]
        others = [repr(name) for name in accepted if name not in PIPELINE_TYPES]
        message = (
            f"pipeline type {shown} is refused by this database's pipeline_config table: "
            f"the types that can be set here are {', '.join(settable) or 'none'}"
        )
        if others:  # another tool's types: listed by its CHECK, never set by this one
            message += f" (it also lists {', '.join(others)}: not types this tool manages)"
        raise InvalidInput(message)
    raise InvalidInput(f"invalid pipeline type {shown}: choose one of {', '.join(PIPELINE_TYPES)}")


def bucket_map(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the type → bucket mapping, with ``PIPELINE_BUCKET_<TYPE>`` overrides applied."""
    environ = environ or {}
    buckets = dict(DEFAULT_BUCKETS)
    for pipeline_type in PIPELINE_TYPES:
        override = environ.get(BUCKET_ENV_PREFIX + pipeline_type.upper(), "").strip()
        if override:
            buckets[pipeline_type] = override
    return buckets
