"""Issue 13: the pullers document their own tables. Every stream schema of every registered puller, and every field
of it, has a description, which lands as the table's and the column's comment (destinations/descriptions.description_text).

The end-to-end half (the DuckDB comments after a real `ingest run`) rides on the cassette replays that already run
each puller block: tests/test_truck_pricing.py and tests/test_carrier_safety.py, via
tests/support/pullers.assert_comments_match_schema.
"""
from __future__ import annotations

import pytest

from ingest.destinations.descriptions import DESCRIPTION_MAX, description_text
from ingest.sources.pullers import PULLERS

from .support.pullers import puller_catalog

STREAMS = [(puller, stream) for puller in sorted(PULLERS) for stream in puller_catalog(puller)]


def test_every_puller_stream_is_checked():
    assert ("truck_pricing", "lane_rates") in STREAMS
    assert {s for p, s in STREAMS if p == "carrier_safety"} == {"snapshots", "basics", "out_of_service", "authority", "lookup_errors"}


@pytest.mark.parametrize("puller,stream", STREAMS)
def test_stream_and_every_field_have_a_description(puller, stream):
    schema, primary_key, cursor = puller_catalog(puller)[stream]
    props = schema["properties"]
    assert set(primary_key) | ({cursor} if cursor else set()) <= set(props)
    texts = {"(stream)": schema.get("description"), **{name: prop.get("description") for name, prop in props.items()}}
    missing = sorted(name for name, text in texts.items() if not isinstance(text, str) or not text.strip())
    assert not missing, f"{puller}.{stream}: no description for {missing}"
    for name, text in texts.items():
        # Stored as written: one line, no doubled spaces, within the comment limit (so comment == description).
        assert description_text({"description": text}) == text and len(text) < DESCRIPTION_MAX, f"{puller}.{stream}.{name}"
    assert len(set(texts.values())) == len(texts), f"{puller}.{stream}: two fields share one description"
