"""`topics/` is generated from the models; it must never drift from them."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from eventflow import events as ev
from eventflow.topics import CO_PARTITIONED, TOPICS, topic_files

from .test_events import samples

TOPICS_DIR = Path(__file__).parents[2] / "topics"


def test_topics_folder_matches_the_models() -> None:
    expected = topic_files()
    present = {str(p.relative_to(TOPICS_DIR)) for p in TOPICS_DIR.rglob("*.json")}
    assert present == set(expected), "run `make schemas` to regenerate topics/"
    for relative, content in expected.items():
        assert (TOPICS_DIR / relative).read_bytes() == content, (
            f"topics/{relative} is stale: run `make schemas`"
        )


def test_every_event_type_has_a_topic_and_co_partitioned_topics_agree() -> None:
    homes = {t for spec in TOPICS for t in spec.events}
    assert homes == {kind.event_type for kind in ev.EVENT_TYPES}
    by_name = {spec.name: spec for spec in TOPICS}
    assert len({by_name[name].partitions for name in CO_PARTITIONED}) == 1
    assert (
        by_name["eventflow.task-done"].partitions == by_name["eventflow.task-requests"].partitions
    )


def test_encoded_events_validate_against_the_published_schemas() -> None:
    for event in samples():
        schema = orjson.loads((TOPICS_DIR / "schemas" / f"{event.type}.json").read_bytes())
        jsonschema.validate(orjson.loads(ev.encode(event)), schema)


def test_the_schema_rejects_what_the_models_reject() -> None:
    schema = orjson.loads((TOPICS_DIR / "schemas" / "eventflow.dataset.produced.json").read_bytes())
    bad = orjson.loads(ev.encode(samples()[0]))
    del bad["data"]["version"]
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as e:
        assert "'version' is a required property" in e.message
    else:
        raise AssertionError("the schema accepted an event without a version")


def test_a_cloudevent_from_the_sdk_validates_against_the_published_schema() -> None:
    """Producers in other languages validate with `topics/schemas`: an event any CloudEvents SDK
    writes (an extension, `dataschema`, a content type with parameters) must pass, as it does in
    `decode`; a bad extension name must not."""
    event = CloudEvent(
        attributes={
            "type": "eventflow.dataset.produced",
            "source": "/spark",
            "datacontenttype": "application/json; charset=utf-8",
            "dataschema": "https://example.com/s.json",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        data={"dataset": "raw", "version": 1},
    )
    wire = orjson.loads(JSONFormat().write(event))
    schema = orjson.loads((TOPICS_DIR / "schemas" / "eventflow.dataset.produced.json").read_bytes())
    jsonschema.validate(wire, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**wire, "Trace-Parent": "x"}, schema)
