"""Alpha-beta cost of NCCL-style collectives over a two-tier fabric (scale-up domain, scale-out network).

Ring collectives move ``2 (n-1)/n`` (all-reduce) or ``(n-1)/n`` (all-gather, reduce-scatter) of the buffer
through each rank's link (Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms"); double binary
trees move the same volume with ``O(log n)`` latency steps (Sanders et al. 2009), and NCCL picks the faster,
so for all-reduce the latency term is the smaller of the two. A ring whose ranks sit in several scale-up
domains is limited by the network: with ``k`` group members per domain and one NIC per GPU, the domain's ``k``
NICs carry the traffic in parallel (NCCL runs one ring per NIC), so the usable per-rank bandwidth is
``min(intra, k * inter)``. Ranks are laid out Megatron-style: TP fastest, then CP, then DP, then PP (each
group has a ``stride``).
"""

from __future__ import annotations

import numpy as np

from fathom.specs.hardware import SystemSpec

ArrayLike = np.ndarray | float | int


def _members(span: float, size: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """How many members of a group of ``size`` ranks, ``stride`` apart, fall within ``span`` consecutive GPUs."""
    per_span = np.clip(np.floor(span / np.maximum(np.asarray(stride, dtype=float), 1.0)), 1.0, None)
    return np.minimum(per_span, np.asarray(size, dtype=float))


def group_link(system: SystemSpec, size: ArrayLike, stride: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Effective per-rank bandwidth (bytes/s) and per-step latency (s) for a group of ``size`` ranks."""
    size = np.asarray(size, dtype=float)
    stride = np.asarray(stride, dtype=float)
    domain = float(system.domain_size)
    inside = size * stride <= domain
    members_per_domain = _members(domain, size, stride)
    network_bw = np.minimum(system.intra_bytes_per_s, members_per_domain * system.inter_bytes_per_s)
    bw = np.where(inside, system.intra_bytes_per_s, network_bw)
    latency = np.where(inside, system.intra_node_latency_us, system.inter_node_latency_us) * 1e-6
    return bw, latency


def ranks_per_node(system: SystemSpec, size: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """How many members of a group of ``size`` ranks (``stride`` apart) share one node."""
    return _members(float(system.gpus_per_node), size, stride)


def _all_reduce_steps(system: SystemSpec, n: np.ndarray, stride: ArrayLike) -> np.ndarray:
    """Latency steps of NCCL's faster all-reduce: a ring (2(n-1)) or a tree, which chains the ranks inside a node
    and runs double binary trees only between nodes (Sanders et al. 2009; NCCL 2.4 tree design)."""
    local = ranks_per_node(system, n, stride)
    nodes = np.ceil(n / local)
    tree_steps = 2.0 * ((local - 1.0) + np.ceil(np.log2(np.maximum(nodes, 1.0))))
    return np.minimum(2.0 * (n - 1.0), tree_steps)


def all_reduce_s(system: SystemSpec, nbytes: ArrayLike, size: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """Time of an all-reduce of ``nbytes`` over ``size`` ranks (0 when ``size`` is 1)."""
    n = np.asarray(size, dtype=float)
    bw, lat = group_link(system, n, stride)
    t = 2.0 * (n - 1.0) / n * np.asarray(nbytes, dtype=float) / bw + lat * _all_reduce_steps(system, n, stride)
    return np.where(n > 1, t, 0.0)


def all_gather_s(system: SystemSpec, nbytes: ArrayLike, size: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """Time of an all-gather whose *output* is ``nbytes`` per rank; reduce-scatter costs the same.

    Rings take ``n - 1`` latency steps. NCCL's PAT algorithm (NCCL 2.23 release notes, 2024) does these
    collectives in ``log2 n`` steps, but only when each node holds one rank of the group; groups with several
    ranks per node run rings.
    """
    n = np.asarray(size, dtype=float)
    bw, lat = group_link(system, n, stride)
    pat = np.minimum(n - 1.0, np.ceil(np.log2(np.maximum(n, 2.0))))
    steps = np.where(ranks_per_node(system, n, stride) <= 1.0, pat, n - 1.0)
    t = (n - 1.0) / n * np.asarray(nbytes, dtype=float) / bw + lat * steps
    return np.where(n > 1, t, 0.0)


reduce_scatter_s = all_gather_s


def all_to_all_s(system: SystemSpec, nbytes: ArrayLike, size: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """Time of an all-to-all where each rank sends ``nbytes`` in total, an equal share to every rank.

    Unlike a ring, nothing is aggregated: the share bound for peers outside this rank's scale-up domain leaves
    through this rank's own NIC, the rest crosses the scale-up links; both run at once, and all peers are
    addressed concurrently (one latency).
    """
    n = np.asarray(size, dtype=float)
    stride = np.asarray(stride, dtype=float)
    domain = float(system.domain_size)
    local = _members(domain, n, stride)
    data = np.asarray(nbytes, dtype=float)
    intra = data * (local - 1.0) / n / system.intra_bytes_per_s
    inter = data * (n - local) / n / system.inter_bytes_per_s
    lat = np.where(n > local, system.inter_node_latency_us, system.intra_node_latency_us) * 1e-6
    return np.where(n > 1, np.maximum(intra, inter) + lat, 0.0)


def ring_exchange_s(system: SystemSpec, nbytes: ArrayLike, size: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """One step of a point-to-point ring over ``size`` ranks ``stride`` apart, each rank sending ``nbytes`` to
    the next (context parallelism's K/V ring, Liu et al. 2023 "Ring Attention"). The ranks step in lockstep, so
    once the ring leaves the scale-up domain every step waits for the hops that cross the network, each on
    one GPU's NIC; nothing is split over several NICs as NCCL's multi-ring collectives do."""
    crosses = np.asarray(size, dtype=float) * np.asarray(stride, dtype=float) > system.domain_size
    bw = np.where(crosses, system.inter_bytes_per_s, system.intra_bytes_per_s)
    lat = np.where(crosses, system.inter_node_latency_us, system.intra_node_latency_us) * 1e-6
    return np.asarray(nbytes, dtype=float) / bw + lat


def p2p_s(system: SystemSpec, nbytes: ArrayLike, stride: ArrayLike) -> np.ndarray:
    """One point-to-point send between neighbouring pipeline stages ``stride`` ranks apart."""
    bw, lat = group_link(system, 2.0, stride)
    per_rank_bw = np.where(np.asarray(stride) >= system.domain_size, system.inter_bytes_per_s, bw)
    return np.asarray(nbytes, dtype=float) / per_rank_bw + lat
