"""Abstract base classes of every pluggable module."""

from .base import Kind, Module, Params
from .kinds import Access, Attack, Dataset, Defense, Knowledge, Metric, ModelFactory, as_metric_list

__all__ = [
    "Access",
    "Attack",
    "Dataset",
    "Defense",
    "Kind",
    "Knowledge",
    "Metric",
    "ModelFactory",
    "Module",
    "Params",
    "as_metric_list",
]
