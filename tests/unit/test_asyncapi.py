"""`topics/asyncapi.json` is generated from the topic specs and the models, and is a valid
AsyncAPI 3.0 document whose references all resolve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson

from eventflow.events import BY_TYPE
from eventflow.topics import TOPICS, asyncapi, topic_files

TOPICS_DIR = Path(__file__).parents[2] / "topics"
SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((TOPICS_DIR / "asyncapi.json").read_bytes())
    return loaded


def test_the_asyncapi_document_matches_the_topics_and_models() -> None:
    assert (TOPICS_DIR / "asyncapi.json").read_bytes() == topic_files()["asyncapi.json"], (
        "topics/asyncapi.json is stale: run `make schemas`"
    )


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    schema = orjson.loads(SCHEMA.read_bytes())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document())
    ]
    assert errors == []


def test_an_invalid_document_is_caught_by_the_schema() -> None:
    """The vendored schema checks what matters here (it is not a schema accepting anything)."""
    bad = asyncapi()
    bad["channels"]["datasets"]["bindings"]["kafka"]["partitions"] = 0
    schema = orjson.loads(SCHEMA.read_bytes())
    assert not jsonschema.Draft7Validator(schema).is_valid(bad)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_topic_is_a_channel_with_its_messages_keys_and_resolving_references() -> None:
    doc = document()
    by_address = {channel["address"]: channel for channel in doc["channels"].values()}
    assert set(by_address) == {spec.name for spec in TOPICS}
    for spec in TOPICS:
        channel = by_address[spec.name]
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        names = {message["name"] for message in channel["messages"].values()}
        assert names == set(spec.events)
        for message in channel["messages"].values():
            payload = TOPICS_DIR / message["payload"]["$ref"]
            assert orjson.loads(payload.read_bytes())["$id"] == f"eventflow/{message['name']}"
            assert message["title"] == BY_TYPE[message["name"]].__name__
            key = message.get("bindings", {}).get("kafka", {}).get("key")
            assert (key is None) == (spec.key == "none"), spec.name
    for operation in doc["operations"].values():
        channel = resolve(doc, operation["channel"]["$ref"])
        for message in operation["messages"]:
            assert resolve(doc, message["$ref"]) in channel["messages"].values()
