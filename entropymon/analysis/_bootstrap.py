"""Resamples of a bootstrap processed a block at a time.

Why: the pairs bootstraps of the law and of the entropy dynamics resample every point of a run,
e.g. 1000 resamples of 10,000 steps: as whole (1000, 10000) matrices that is several 80 MB arrays
per fit, and on a fresh process (the dashboard opening a run) their first touch alone cost more
than the arithmetic (0.7-1.1 s against 0.3 s per fit on the development VM). Blocks of a few MB are
reused by the allocator and stay in cache. Each resample's figures come from its own row, reduced
along that row exactly as before, so the results do not change (tests compare them bitwise).
"""

from __future__ import annotations

BLOCK_VALUES = 1 << 19  # values per block: 4 MB of float64


def blocks(n_resamples: int, n_points: int) -> list[slice]:
    """Slices of resample rows covering ``range(n_resamples)``, each of about BLOCK_VALUES values and
    of two rows or more (unless there is one resample): numpy reduces a lone row of over 8192
    values in another order than the rows of a matrix, which changed the last bits."""
    rows = max(2, BLOCK_VALUES // max(1, n_points))
    starts = list(range(0, n_resamples, rows))
    if len(starts) > 1 and n_resamples - starts[-1] == 1:
        starts.pop()  # the last row joins the block before it
    return [slice(start, end) for start, end in zip(starts, [*starts[1:], n_resamples])]
