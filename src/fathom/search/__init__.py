"""Plan search: enumerate plan spaces as arrays, price them with the estimators, rank and explain."""

from fathom.search.pareto import non_dominated, training_pareto
from fathom.search.training_report import RankedPlan, TrainingSearchResult
from fathom.search.training_search import search_training
from fathom.search.training_space import SearchAxes, enumerate_plans, gpu_counts

__all__ = [
    "RankedPlan",
    "SearchAxes",
    "TrainingSearchResult",
    "enumerate_plans",
    "gpu_counts",
    "non_dominated",
    "search_training",
    "training_pareto",
]
