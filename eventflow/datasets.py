"""Datasets: the named data assets tasks read and write.

Its own module because both the DSL and what a body receives name datasets, and neither should
import the other to do so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .freshness import Freshness
from .partitions import NONE, Partitioning


@dataclass(frozen=True)
class Dataset:
    """A named data asset; events say which version of which partition was produced.

    `partitions` says how partition keys are spelled (`daily()`, `hourly()`, `static(...)`); an
    unpartitioned dataset has a single, empty, key. `freshness` says when it is late
    (`Freshness(deadline=..., max_age=...)`); the coordinator reports it violated and recovered.
    """

    name: str
    partitions: Partitioning = NONE
    description: str = ""
    freshness: Freshness | None = None


DatasetLike = Dataset | str


def dataset_name(dataset: DatasetLike) -> str:
    """The name events carry, whether a `Dataset` or its name was given."""
    return dataset.name if isinstance(dataset, Dataset) else str(dataset)
