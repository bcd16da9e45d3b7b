"""Which transformer layers each pipeline stage holds: the split fathom prices, and engine settings that give it.

fathom prices the fullest pipeline rank at ceil(num_layers / pp) layers, all the interleaved model chunks of a rank
together (``fathom.training.shapes``); with ``balance_pipeline_ends`` the embedding and the LM head count as a layer
each, so the first and last stages hold one layer fewer. A launch file that puts more layers on some rank would run
out of the memory or the step time fathom estimated, and one that asks an engine for a split it refuses does not
start: Megatron-Core splits evenly unless told which layers the first and last stages hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def priced_rank_layers(num_layers: int, pp: int) -> int:
    """Layers on the fullest pipeline rank as fathom prices it."""
    return -(-num_layers // pp)


def rank_layers(chunks: list[int], pp: int) -> list[int]:
    """Layers per rank when model chunk k runs on rank k % pp (Megatron's and torchtitan's interleaved placement)."""
    totals = [0] * pp
    for k, n in enumerate(chunks):
        totals[k % pp] += n
    return totals


# ---- Megatron-LM ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MegatronSplit:
    """Megatron-LM's uneven-pipeline arguments (megatron/training/arguments.py): ``--decoder-first-pipeline-num-layers``
    and ``--decoder-last-pipeline-num-layers`` (the middle stages split the rest evenly), or, where those cannot
    give the split, ``--pipeline-model-parallel-layout``. All None: the even split."""

    first: int | None = None
    last: int | None = None
    layout: str | None = None


def layer_chunks(num_layers: int, pp: int, vpp: int) -> list[int]:
    """Layers of each of the pp * vpp model chunks (chunk k on rank k % pp), at most ceil(L/pp) a rank: an equal
    share each, and the remainder one layer apiece on the middle ranks' chunks first, so the ends stay lightest."""
    stages = pp * vpp
    base, extra = divmod(num_layers, stages)
    chunks = [base] * stages
    ranks = [*range(1, pp - 1), pp - 1, 0] if pp > 1 else [0]
    order = [v * pp + r for v in range(vpp) for r in ranks]
    for k in order[:extra]:
        chunks[k] += 1
    return chunks


def megatron_split(num_layers: int, pp: int, vpp: int) -> MegatronSplit:
    """The even split where Megatron-Core makes one; else uneven first and last stages (Megatron-Core wants every
    stage's layers a multiple of vpp and the middle stages equal); else an explicit layout. Each keeps every rank
    at or under the layers fathom priced."""
    if pp == 1 or (num_layers % pp == 0 and (num_layers // pp) % vpp == 0):
        return MegatronSplit()
    cap = priced_rank_layers(num_layers, pp)
    middles = [0] if pp == 2 else range(cap - cap % vpp, 0, -vpp)  # fullest middle stages first
    for middle in middles:
        rest = num_layers - (pp - 2) * middle
        pairs = [(f, rest - f) for f in range(vpp, cap + 1, vpp) if vpp <= rest - f <= cap and (rest - f) % vpp == 0]
        if pairs:
            first, last = min(pairs, key=lambda fl: (abs(fl[1] - fl[0]), fl[0] > fl[1]))  # the lighter one first
            if pp == 2:
                return MegatronSplit(first=first)
            return MegatronSplit(first=first if first != middle else None, last=last if last != middle else None)
    return MegatronSplit(layout=megatron_layout(layer_chunks(num_layers, pp, vpp)))


def megatron_layout(chunks: list[int]) -> str:
    """``--pipeline-model-parallel-layout`` for these chunks: ``E`` embedding, ``t`` a layer, ``L`` the loss, ``|``
    between stages, ``(..|)*n`` a run of n equal stages, commas cosmetic (Megatron-LM's help for the flag)."""
    stages = ["t" * n for n in chunks]
    stages[0], stages[-1] = "E" + stages[0], stages[-1] + "L"
    text, i = "", 0
    while i < len(stages) - 1:
        j = i
        while j + 1 < len(stages) - 1 and stages[j + 1] == stages[i]:
            j += 1
        text += f"({stages[i]}|)*{j - i + 1}," if j > i else f"{stages[i]}|"
        i = j + 1
    return text + stages[-1]


def parse_megatron_layout(text: str) -> list[int]:
    """Layers of each stage of a ``--pipeline-model-parallel-layout`` (its ``(..)*n`` and ``x*n`` repeats unrolled);
    ValueError when it is malformed."""
    flat = text.replace(",", "").replace(" ", "")
    flat = re.sub(r"\(([^)]+)\)\*(\d+)", lambda m: m.group(1) * int(m.group(2)), flat)
    flat = re.sub(r"(.)\*(\d+)", lambda m: m.group(1) * int(m.group(2)), flat)
    if not flat or set(flat) - set("EtLm|"):
        raise ValueError(text)
    return [stage.count("t") for stage in flat.split("|")]


def megatron_stage_layers(num_layers: int, pp: int, first: int | None, last: int | None) -> list[int] | None:
    """Layers per stage under --decoder-first/last-pipeline-num-layers; None when Megatron-Core would refuse."""
    stages, rest = pp, num_layers
    for n in (first, last):
        if n is not None:
            stages, rest = stages - 1, rest - n
    if any(n is not None and n < 1 for n in (first, last)) or stages < 0 or bool(rest) != bool(stages):
        return None
    if stages and rest % stages:
        return None
    middle = rest // stages if stages else 0
    return [first if first is not None else middle] + [middle] * (pp - 2) + [last if last is not None else middle]


# ---- torchtitan -----------------------------------------------------------------------------------------------
def torchtitan_stage_layers(num_layers: int, stages: int, first_less: int, last_less: int) -> list[int] | None:
    """Layers per stage as torchtitan 0.2 cuts them (torchtitan/distributed/pipeline_parallel.py,
    generate_llm_fqn_per_model_part): num_layers + first_less + last_less "effective" layers in equal stages, the
    remainder one apiece on the first stages, and the first and last stages giving up first_less and last_less for
    the embedding and the head. None where torchtitan refuses."""
    if stages == 1:
        return [num_layers]
    effective = num_layers + first_less + last_less
    base, extra = divmod(effective, stages)
    if base == 0 or min(first_less, last_less) < 0 or max(first_less, last_less) > base:
        return None
    counts = [base + (i < extra) for i in range(stages)]
    counts[0] -= first_less
    counts[-1] -= last_less
    return counts


def torchtitan_layers_per_stage(num_layers: int, stages: int, first_less: int, last_less: int) -> int | None:
    """``pipeline_parallel_layers_per_stage`` that makes torchtitan cut exactly ``stages`` stages (it takes
    ceil(effective layers / layers_per_stage)); None when no value does."""
    effective = num_layers + first_less + last_less
    per_stage = -(-effective // stages)
    return per_stage if -(-effective // per_stage) == stages else None


def torchtitan_interleaved(num_layers: int, pp: int, vpp: int) -> tuple[int, int, int, int] | None:
    """(layers_per_stage, first_less, last_less, fullest rank's layers) for torchtitan's Interleaved1F1B with vpp
    stages a rank: a setting whose fullest rank holds no more than fathom priced, preferring the one fathom wrote
    before (ceil(L / stages) a stage, the spare split over the ends), else the lightest; None when torchtitan
    cannot cut pp * vpp stages at all."""
    stages, cap = pp * vpp, priced_rank_layers(num_layers, pp)
    per_stage = -(-num_layers // stages)
    spare = stages * per_stage - num_layers
    preferred = (spare // 2, spare - spare // 2)
    best: tuple | None = None
    for first_less in range(per_stage + 1):
        for last_less in range(per_stage + 1):
            per = torchtitan_layers_per_stage(num_layers, stages, first_less, last_less)
            counts = torchtitan_stage_layers(num_layers, stages, first_less, last_less)
            if per is None or counts is None:
                continue
            fullest = max(rank_layers(counts, pp))
            key = (max(fullest, cap), (first_less, last_less) != preferred, first_less + last_less)
            if best is None or key < best[0]:
                best = (key, (per, first_less, last_less, fullest))
    return best[1] if best else None
