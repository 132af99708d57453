"""Resamples of a bootstrap processed a block at a time.

Why: the pairs bootstraps of the law and of the entropy dynamics resample every point of a run,
e.g. 1000 resamples of 10,000 steps: as whole (1000, 10000) matrices that is several 80 MB arrays
per fit, and on a fresh process (the dashboard opening a run) their first touch alone cost more
than the arithmetic (0.7-1.1 s against 0.3 s per fit on the development VM). A block's arrays (its
resample indices drawn with it) fit in a core's L2 cache, so each pass over them stays in cache:
with 4 MB blocks a 100-resample law fit of 10,000 points took 17 ms, with 512 KB blocks 9 ms (the
dynamics' 1000 resamples 123-309 ms -> 109-113 ms). Each resample's figures come from its own row,
reduced along that row exactly as before, and the random stream is drawn in the same order, so the
results do not change (tests compare them bitwise).
"""

from __future__ import annotations

BLOCK_VALUES = 1 << 16  # values per block: 512 KB of float64


def blocks(n_resamples: int, n_points: int) -> list[slice]:
    """Slices of resample rows covering ``range(n_resamples)``, each of about BLOCK_VALUES values and
    of two rows or more (unless there is one resample): numpy reduces a lone row of over 8192
    values in another order than the rows of a matrix, which changed the last bits."""
    rows = max(2, BLOCK_VALUES // max(1, n_points))
    starts = list(range(0, n_resamples, rows))
    if len(starts) > 1 and n_resamples - starts[-1] == 1:
        starts.pop()  # the last row joins the block before it
    return [slice(start, end) for start, end in zip(starts, [*starts[1:], n_resamples])]
