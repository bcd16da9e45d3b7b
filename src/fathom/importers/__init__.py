"""Importers: a ``ModelSpec`` from another tool's description of a model (a Hugging Face ``config.json``)."""

from fathom.importers.hf_config import model_from_hf_config, supported_model_types

__all__ = ["model_from_hf_config", "supported_model_types"]
