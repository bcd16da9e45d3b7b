"""Serving simulator: a discrete-event, iteration-level model of LLM inference engines.

The simulator never computes time itself: each engine iteration asks a ``StepCostModel`` (``fathom.inference``)
for the time of the batch it scheduled, so the cost model can be swapped without touching scheduling.
"""
