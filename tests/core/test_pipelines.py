import pytest

from webapp.core.errors import InvalidInput
from webapp.core.pipelines import DEFAULT_BUCKETS, PIPELINE_TYPES, bucket_map, validate_type


def test_four_types_with_default_buckets():
    assert PIPELINE_TYPES == ("raw", "schematized", "filtered", "aggregated")
    assert bucket_map() == {
        "raw": "ingestion",
        "schematized": "validated",
        "filtered": "enriched",
        "aggregated": "aggregated",
    }


def test_bucket_overrides_from_environment():
    buckets = bucket_map({"PIPELINE_BUCKET_FILTERED": "s3-enriched-eu", "PIPELINE_BUCKET_RAW": " "})
    assert buckets["filtered"] == "s3-enriched-eu"
    assert buckets["raw"] == DEFAULT_BUCKETS["raw"]  # blank override ignored


@pytest.mark.parametrize("value", ["RAW", "", None, "raw ", "unknown", 3])
def test_invalid_types_are_refused_with_the_valid_ones_named(value):
    with pytest.raises(InvalidInput, match="raw, schematized, filtered, aggregated"):
        validate_type(value)


def test_valid_type_is_returned():
    assert validate_type("aggregated") == "aggregated"
