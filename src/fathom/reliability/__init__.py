"""Fault tolerance of a training run: checkpoint size and write path, failures, restart cost, the optimal
checkpoint interval (Young 1974, Daly 2006) and goodput (kept import-light: ``result.py`` imports the report)."""
