"""Which OpenLineage dataset is which eventflow dataset, and how its partition is read.

A mapping is declared in the App (`App(..., lineage=[LineageMapping(...)])`) and validated with
it, so a dataset the App lacks, or a partitioned dataset with no way to find its partition,
fails at load time rather than when the first lineage event arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..datasets import DatasetLike, dataset_name
from ..errors import DefinitionError, EventError

if TYPE_CHECKING:
    from ..definitions import App

#: A function of the output dataset (its JSON: `namespace`, `name`, `facets`, `outputFacets`)
#: and the whole RunEvent, giving the partition key.
PartitionOf = Callable[[Mapping[str, Any], Mapping[str, Any]], str]
#: The rule that reads the partition from the output subset facet.
SUBSET = "subset"


@dataclass(frozen=True)
class LineageMapping:
    """The OpenLineage dataset (`namespace`, `name`) is eventflow's `dataset`.

    `partition` says where the partition key comes from, for a partitioned dataset:
    `"subset"` (the output subset facet's partition condition, one partition: its
    `identifier`, or the value of its only dimension), a dotted path into the output dataset's
    JSON (`"outputFacets.partition.key"`), or a function of the output dataset and the event.
    """

    namespace: str
    name: str
    dataset: DatasetLike
    partition: str | PartitionOf | None = None

    @property
    def dataset_name(self) -> str:
        """The eventflow dataset's name, whether a `Dataset` or its name was given."""
        return dataset_name(self.dataset)

    def key(self, output: Mapping[str, Any], event: Mapping[str, Any]) -> str:
        """The partition key of `output` as this rule reads it, not yet checked against the
        dataset's scheme; `EventError` when the event does not hold it."""
        rule = self.partition
        if rule is None:
            return ""
        if callable(rule):
            try:
                key = rule(output, event)
            except Exception as e:
                raise EventError(f"the partition function failed: {type(e).__name__}: {e}") from e
            if not isinstance(key, str):
                raise EventError(f"the partition function returned {type(key).__name__}, not str")
            return key
        if rule == SUBSET:
            return _subset_key(output)
        found: Any = output
        for part in rule.split("."):
            if not isinstance(found, Mapping) or part not in found:
                raise EventError(f"the output has no {rule!r}")
            found = found[part]
        if not isinstance(found, str | int) or isinstance(found, bool):
            raise EventError(f"{rule!r} is {type(found).__name__}, not a partition key")
        return str(found)


def _subset_key(output: Mapping[str, Any]) -> str:
    facets = output.get("outputFacets") or {}
    facet = facets.get(SUBSET) if isinstance(facets, Mapping) else None
    condition = facet.get("outputCondition") if isinstance(facet, Mapping) else None
    if not isinstance(condition, Mapping) or condition.get("type") != "partition":
        raise EventError("the output has no subset facet with a partition condition")
    partitions = condition.get("partitions")
    if not isinstance(partitions, list) or len(partitions) != 1:
        raise EventError("the subset facet must name exactly one partition")
    (partition,) = partitions
    if not isinstance(partition, Mapping):
        raise EventError("the subset facet's partition is not an object")
    identifier = partition.get("identifier")
    if isinstance(identifier, str) and identifier:
        return identifier
    dimensions = partition.get("dimensions")
    if isinstance(dimensions, Mapping) and len(dimensions) == 1:
        (value,) = dimensions.values()
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    raise EventError("the subset facet's partition has no identifier and not one dimension")


def validate(mappings: Iterable[LineageMapping], app: App) -> dict[tuple[str, str], LineageMapping]:
    """The App's mappings by (namespace, name), each checked against the App;
    `DefinitionError` otherwise."""
    found: dict[tuple[str, str], LineageMapping] = {}
    for mapping in mappings:
        if not isinstance(mapping, LineageMapping):
            kind = type(mapping).__name__
            raise DefinitionError(f"lineage= takes ef.LineageMapping, not {kind}")
        where = f"lineage mapping {mapping.namespace!r}/{mapping.name!r}"
        if not all(isinstance(s, str) and s for s in (mapping.namespace, mapping.name)):
            raise DefinitionError(f"{where}: namespace and name must be non-empty strings")
        if (mapping.namespace, mapping.name) in found:
            raise DefinitionError(f"{where} is given twice")
        name = dataset_name(mapping.dataset)
        dataset = app.datasets.get(name)
        if dataset is None:
            raise DefinitionError(f"{where}: the App has no dataset {name!r}")
        rule = mapping.partition
        if dataset.partitions.partitioned and rule is None:
            raise DefinitionError(
                f"{where}: dataset {name!r} is partitioned; say where its partition comes from "
                f"(partition='subset', a dotted path into the output, or a function)"
            )
        if not dataset.partitions.partitioned and rule is not None:
            raise DefinitionError(f"{where}: dataset {name!r} is not partitioned: no partition=")
        if rule is not None and not callable(rule) and not (isinstance(rule, str) and rule):
            raise DefinitionError(f"{where}: partition= is 'subset', a dotted path or a function")
        found[(mapping.namespace, mapping.name)] = mapping
    return found
