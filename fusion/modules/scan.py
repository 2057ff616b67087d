"""The one place modules call the selective scan from.

Routes to :func:`fusion.ops.selective_scan.selective_scan_fn` and, while a FLOP count is
active, records the scan's analytic FLOPs instead of running a backend, so the count never
depends on which backend would have run (backends are not all visible to torch's counter).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from torch import Tensor

from fusion.ops.selective_scan import selective_scan_flops, selective_scan_fn

_scan_flops: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "s4fuse_scan_flops", default=None
)


@contextlib.contextmanager
def count_scan_flops() -> Iterator[list[int]]:
    """Within this context scans are not executed: their FLOPs are appended to the yielded list
    and a zero output of the right shape is returned (shapes are all a FLOP count needs)."""
    record: list[int] = []
    token = _scan_flops.set(record)
    try:
        yield record
    finally:
        _scan_flops.reset(token)


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor, backend: str
) -> Tensor:
    """Selective scan with softplus(delta + delta_bias), the form every S4Fusion block uses."""
    record = _scan_flops.get()
    if record is not None:
        record.append(selective_scan_flops(u.shape[0], u.shape[1], u.shape[2], A.shape[1]))
        return u.new_zeros(u.shape)
    return selective_scan_fn(
        u, delta, A, B, C, D, delta_bias=delta_bias, delta_softplus=True, backend=backend
    )
