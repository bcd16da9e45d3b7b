"""Energy, power and carbon of a training run: a phase-aware power model per device, power caps and their
throughput cost, PUE, grid carbon intensity by region and embodied carbon (kept import-light: ``result.py``
and the validation import pieces of it)."""
