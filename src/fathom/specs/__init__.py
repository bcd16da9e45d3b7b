"""Specs: frozen descriptions of a model, the hardware, and an execution plan."""
