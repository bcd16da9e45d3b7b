"""Measure the machine fathom runs on, fit the efficiency model to it, and check predictions against PyTorch.

``fathom profile`` runs the microbenchmarks (``bench_*``), ``fit`` turns them into a device profile YAML that
every command accepts as ``--gpu``, and ``fathom check train|serve`` (``check_*``) times real PyTorch work built
from a ModelSpec and compares it with the prediction. Everything that imports torch is imported lazily, so
fathom works without the ``profile`` extra.
"""
