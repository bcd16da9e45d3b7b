"""Compute budgets: a FLOP, GPU-day or dollar budget -> compute-optimal model size and tokens (Chinchilla, with
data-constrained corrections), a batch size bounded by the critical batch, a model shape and a plan."""
