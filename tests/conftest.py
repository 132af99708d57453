"""Shared test helpers: the tiny policy the hook tests train, and reading a figure's messages.

Why here: several test files train the same kind of tiny model (a prompt embedding, a learned
position table and a linear head: no download, a few hundred parameters) and read the notes an
empty figure carries; one copy keeps them identical. Test files import them by name (``from
conftest import TinyPolicy``): ``tests/`` is on ``sys.path`` under pytest's default import mode,
as for ``log_child`` and ``synthetic``. torch is imported only when a policy is built, so the
torch-free tests never load it.
"""

from __future__ import annotations


def TinyPolicy(vocab: int, length: int, groups: int, *, position_scale: float = 0.1, logit_scale: float = 1.0):
    """A policy giving logits for every completion position from a prompt id: (B,) -> (B, T, V).

    Parameters are drawn from torch's global generator in a fixed order (embedding, positions,
    head), so ``torch.manual_seed`` before building it fixes the model.
    """
    import torch

    class _TinyPolicy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prompt = torch.nn.Embedding(groups, 16)
            self.position = torch.nn.Parameter(torch.randn(length, 16) * position_scale)
            self.head = torch.nn.Linear(16, vocab)

        def forward(self, prompt_ids):
            hidden = self.prompt(prompt_ids)[:, None, :] + self.position  # (B, T, 16)
            return self.head(torch.tanh(hidden)) * logit_scale  # (B, T, V)

    return _TinyPolicy()


def annotation_text(fig) -> str:
    """Every annotation of a plotly figure (where an empty figure says why), joined."""
    return " ".join(a.text for a in fig.layout.annotations)


def blocked_signals(native_id: int) -> set[int]:
    """The signals a thread blocks, from the kernel's own record (Linux /proc)."""
    from pathlib import Path

    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask >> (n - 1) & 1}
    raise AssertionError(f"no SigBlk line for thread {native_id}")
