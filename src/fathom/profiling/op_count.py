"""Count the ATen ops an eager PyTorch call dispatches (``TorchDispatchMode``), forward and backward.

``fathom profile`` divides the host time of eager layers by these counts (the per-op host cost), and the tests
recount the reference layer to hold ``fathom.training.eager``'s op inventory to what PyTorch really runs.
"""

from __future__ import annotations

from collections.abc import Callable


def count_ops(loss_fn: Callable[[], object], backward: bool = True) -> tuple[int, int]:
    """(ops dispatched by ``loss_fn()``, ops dispatched by ``.backward()`` on its result; 0 without ``backward``)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    with _Count() as fwd:
        loss = loss_fn()
    if not backward:
        return fwd.n, 0
    with _Count() as bwd:
        loss.backward()  # type: ignore[attr-defined]
    return fwd.n, bwd.n
