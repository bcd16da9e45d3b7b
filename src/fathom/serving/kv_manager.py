"""Paged KV-cache accounting for one replica (vLLM's PagedAttention block manager, Kwon et al. 2023).

The cache is ``kv_capacity_tokens // block_size`` fixed-size blocks. A request holds ``ceil(tokens / block_size)``
blocks for the tokens whose KV it keeps; the replica tells the manager how many tokens a request holds when it
frees it, so decoding requests need no per-token bookkeeping here (the replica grows them in bulk with ``grow``).

Prefix caching (vLLM automatic prefix caching; SGLang's RadixAttention, Zheng et al. 2024): the full blocks of a
shared prefix are keyed by ``(prefix_id, block index)`` once computed, reference-counted by the requests using them,
and kept after their last user leaves until space is needed, then evicted least-recently-released first. A block
counts as a hit only if every earlier block of the same prefix is cached too (the hash chain of vLLM's blocks).

Parallel samples (``fork``): the prompt's full blocks are shared by the samples of one request the same way, keyed
by the request, and freed (not cached) when the last sample leaves.

Swapping (vLLM's ``swap`` preemption): the KV of a preempted request moves over the host link, taking
``tokens * kv_bytes_per_token / host_link_bytes_per_s`` seconds each way; blocks come back private (no sharing).
"""

from __future__ import annotations

from collections import OrderedDict

from fathom.serving.cost import StepCostModel

PrefixKey = tuple[str, int]


class KVCacheManager:
    """Block counts of one replica's KV cache: free, held by requests, and cached prefix blocks."""

    def __init__(self, cost: StepCostModel) -> None:
        self.block_size = int(cost.block_size)
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {cost.block_size}")
        self.capacity_blocks = int(cost.kv_capacity_tokens) // self.block_size
        self._bytes_per_token = float(cost.kv_bytes_per_token)
        self._host_bw = float(cost.host_link_bytes_per_s)
        self._free = self.capacity_blocks  # blocks holding nothing
        self._ref: dict[PrefixKey, int] = {}  # every cached prefix block -> requests using it
        self._evictable: OrderedDict[PrefixKey, None] = OrderedDict()  # cached blocks nobody uses, LRU first
        self._shared: dict[int, tuple[str, int]] = {}  # request id -> (prefix_id, leading cached blocks it uses)
        self.evictions = 0
        self.swap_out_bytes = 0.0
        self.swap_in_bytes = 0.0

    # -- sizes -------------------------------------------------------------------------------------------------
    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @property
    def available(self) -> int:
        """Blocks a new allocation may take: free ones plus cached blocks nobody references."""
        return self._free + len(self._evictable)

    @property
    def used_blocks(self) -> int:
        """Blocks held by requests (a shared prefix block counts once)."""
        return self.capacity_blocks - self._free - len(self._evictable)

    @property
    def cached_blocks(self) -> int:
        return len(self._ref)

    # -- allocation --------------------------------------------------------------------------------------------
    def _take(self, n: int) -> None:
        if n <= self._free:
            self._free -= n
            return
        if n > self.available:
            raise RuntimeError(f"KV cache over-committed: asked {n} blocks, {self.available} available")
        for _ in range(n - self._free):
            key, _ = self._evictable.popitem(last=False)
            del self._ref[key]
            self.evictions += 1
        self._free = 0

    def try_grow(self, n: int) -> bool:
        """``grow`` if the blocks are there (the common case: free ones), else False and nothing taken."""
        if n <= self._free:
            self._free -= n
            return True
        if n <= self._free + len(self._evictable):
            self._take(n)
            return True
        return False

    def grow(self, n: int) -> None:
        """``n`` more blocks for requests whose token counts the caller tracks (decode growth)."""
        if n:
            self._take(n)

    def extend(self, old_tokens: int, new_tokens: int) -> bool:
        """Grow a request from ``old_tokens`` to ``new_tokens``; False (nothing taken) if the blocks are not there."""
        need = self.blocks_for(new_tokens) - self.blocks_for(old_tokens)
        if need > self.available:
            return False
        self._take(need)
        return True

    def cached_prefix_blocks(self, prefix_id: str, max_blocks: int) -> int:
        """Leading blocks of ``prefix_id`` already cached, at most ``max_blocks``."""
        n = 0
        while n < max_blocks and (prefix_id, n) in self._ref:
            n += 1
        return n

    def can_admit(self, prefix_id: str | None, hit_blocks: int, tokens: int) -> bool:
        """Whether a request reusing ``hit_blocks`` cached blocks can hold ``tokens`` tokens."""
        need = self.blocks_for(tokens) - hit_blocks
        if not hit_blocks:
            return need <= self._free + len(self._evictable)
        reclaim = sum(1 for i in range(hit_blocks) if self._ref[(prefix_id, i)] == 0)  # type: ignore[index]
        return need <= self.available - reclaim

    def admit(self, rid: int, prefix_id: str | None, hit_blocks: int, tokens: int) -> None:
        """Take the cached hits and private blocks for ``tokens`` (call ``can_admit`` first)."""
        for i in range(hit_blocks):
            key = (prefix_id, i)
            ref = self._ref[key]  # type: ignore[index]
            if ref == 0:
                del self._evictable[key]  # type: ignore[arg-type]
            self._ref[key] = ref + 1  # type: ignore[index]
        if prefix_id is not None:
            self._shared[rid] = (prefix_id, hit_blocks)
        self._take(self.blocks_for(tokens) - hit_blocks)

    def commit_prefix(self, rid: int, prefix_id: str, computed_blocks: int) -> None:
        """Publish the request's first ``computed_blocks`` prefix blocks to the cache once their KV exists.

        A block some other request cached meanwhile is shared instead and the request's own copy freed."""
        pid, n = self._shared.get(rid, (prefix_id, 0))
        for i in range(n, computed_blocks):
            key = (pid, i)
            ref = self._ref.get(key)
            if ref is None:
                self._ref[key] = 1  # the request's private block becomes the cached copy
            else:
                if ref == 0:
                    del self._evictable[key]
                self._ref[key] = ref + 1
                self._free += 1
        self._shared[rid] = (pid, max(n, computed_blocks))

    def free(self, rid: int, tokens: int) -> None:
        """Release a request holding ``tokens`` tokens; its prefix blocks stay cached (tail blocks evicted first)."""
        pid, n = self._shared.pop(rid, ("", 0))
        private = self.blocks_for(tokens) - n
        if private < 0:
            raise RuntimeError(f"request {rid} frees {tokens} tokens but shares {n} blocks")
        self._free += private
        for i in range(n - 1, -1, -1):
            key = (pid, i)
            ref = self._ref[key] - 1
            self._ref[key] = ref
            if ref == 0:
                if type(pid) is tuple:  # a forked prompt's block: nobody else can reuse it
                    del self._ref[key]
                    self._free += 1
                else:
                    self._evictable[key] = None

    def fork(self, rid: int, children: list[int], shared_blocks: int, extra_blocks: int) -> None:
        """Parallel samples (vLLM's sequence-group fork): the first ``shared_blocks`` (full) blocks of request
        ``rid`` become shared by the ``children`` ids, reference-counted, freed when the last child frees them; its
        other blocks pass to the first child, and ``extra_blocks`` more are taken for the others' copies of the
        partial last block (copy-on-write). Call with ``extra_blocks <= available``."""
        pid = ("fork", rid)
        for i in range(shared_blocks):
            self._ref[(pid, i)] = len(children)  # type: ignore[index]
        for child in children:
            self._shared[child] = (pid, shared_blocks)  # type: ignore[assignment]
        self._take(extra_blocks)

    # -- swapping ----------------------------------------------------------------------------------------------
    def transfer_s(self, tokens: int) -> float:
        """Seconds to move ``tokens`` tokens of KV over the host link, one way."""
        return tokens * self._bytes_per_token / self._host_bw

    def swap_out(self, rid: int, held_tokens: int, kv_tokens: int) -> float:
        """Free the request's blocks and return the seconds to copy its ``kv_tokens`` of KV to host memory."""
        self.free(rid, held_tokens)
        self.swap_out_bytes += kv_tokens * self._bytes_per_token
        return self.transfer_s(kv_tokens)

    def swap_in(self, alloc_tokens: int, kv_tokens: int) -> float:
        """Take private blocks for ``alloc_tokens`` and return the seconds to copy ``kv_tokens`` back."""
        self._take(self.blocks_for(alloc_tokens))
        self.swap_in_bytes += kv_tokens * self._bytes_per_token
        return self.transfer_s(kv_tokens)
