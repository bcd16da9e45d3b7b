"""Batch size for a compute budget.

- DeepSeek LLM (DeepSeek-AI 2024, arXiv:2401.02954, Sec. 3.1): the near-optimal batch in tokens
  ``B_opt = 0.2920 C**0.3271`` (C in FLOPs), fitted on their small-scale sweeps.
- Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", arXiv:2001.08361, Eq. 5.3): the critical
  batch ``B_crit(L) = B* / L**(1/alpha_B)`` with B* = 2e8 tokens and alpha_B = 0.21, L in nats per token. Their
  loss is on WebText2 with GPT-2's tokenizer, so feeding it a Chinchilla-fit loss is an order-of-magnitude
  bound, not a precise one.
fathom trains with ``min(B_opt, B_crit)``: the DeepSeek batch, never above the critical batch estimate.
"""

from __future__ import annotations

import numpy as np


def deepseek_batch_tokens(flops) -> np.ndarray:
    return 0.2920 * np.asarray(flops, dtype=float) ** 0.3271


def kaplan_critical_batch_tokens(loss_nats) -> np.ndarray:
    return 2e8 / np.asarray(loss_nats, dtype=float) ** (1.0 / 0.21)


def training_batch_tokens(flops, loss_nats) -> np.ndarray:
    return np.minimum(deepseek_batch_tokens(flops), kaplan_critical_batch_tokens(loss_nats))
