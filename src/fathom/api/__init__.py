"""The Python API: what the CLI (and later the web app) call, with catalog names instead of specs."""

from fathom.api.search import search_serving_deployments, search_training_plans
from fathom.api.serving import simulate_serving
from fathom.api.training import estimate_training_plan

__all__ = ["estimate_training_plan", "search_serving_deployments", "search_training_plans", "simulate_serving"]
