"""Which distributed rank this process is, without making a collective call.

Each rank writes its own log files, so the Monitor only needs its own rank number. It is read
from an initialised ``torch.distributed`` process group, else from the ``RANK`` environment
variable that torchrun / accelerate / deepspeed set, else it is 0. Nothing here talks to the
other ranks: a failed monitor on one rank can never hang the others.
"""

from __future__ import annotations

import os

from entropymon.errors import InputError


def resolve_rank(rank: int | None = None) -> int:
    """The rank to log under: ``rank`` when given, else torch.distributed's, else ``$RANK``, else 0."""
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise InputError(f"rank: expected a non-negative int or None, got {rank!r}")
        return rank
    distributed_rank = _torch_distributed_rank()
    if distributed_rank is not None:
        return distributed_rank
    env_rank = os.environ.get("RANK", "").strip()
    if env_rank:
        if not env_rank.isdigit():
            raise InputError(f"RANK environment variable: expected a non-negative integer, got {env_rank!r}")
        return int(env_rank)
    return 0


def _torch_distributed_rank() -> int | None:
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())  # local bookkeeping of the process group, not a collective
    return None
