"""Masked-vocabulary and peaked-policy benchmark: ``token_entropy`` when most of ``exp`` underflows.

Why: CPU ``exp`` of a value that underflows (a ``-inf`` logit of a masked vocabulary, or most of
the vocabulary of a peaked policy at low temperature) takes a slow path, 20-90x slower than exp of
an ordinary value; ``token_entropy`` floors s = (z - max z)/T at ``S_FLOOR`` so those cases cost
what ordinary logits cost. Method: (64, 32000) float32 logits, one thread, best of 21 calls of
each case, as a ratio to one read of the same logits (``z.sum(-1)``) measured in the same run.
Cases: N(0, 4^2) logits; the same with half of every row's vocabulary at -inf; N(0, 40^2) logits.
Run: ``python benchmarks/entropy_masked.py`` (a few seconds). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import time

import torch

from entropymon.metrics.entropy import token_entropy


def best_seconds(function, x, repeats: int = 21) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(x)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    ordinary = torch.randn(64, 32000, generator=generator) * 4
    masked = ordinary.clone()
    masked[:, 16000:] = -float("inf")
    cases = {"ordinary N(0, 4^2)": ordinary, "half the vocabulary -inf": masked, "peaked N(0, 40^2)": ordinary * 10}
    one_read = best_seconds(lambda z: z.sum(-1), ordinary)
    print(f"one read: {one_read * 1e3:.2f} ms")
    for name, logits in cases.items():
        seconds = best_seconds(token_entropy, logits)
        print(f"{name}: {seconds * 1e3:.2f} ms = {seconds / one_read:.2f}x one read")


if __name__ == "__main__":
    main()
