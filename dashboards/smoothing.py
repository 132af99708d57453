"""Display smoothing of noisy per-step curves (the slider on the run view).

Why: per-step reward and entropy are noisy; a trailing exponential moving average with a
TensorBoard-style weight in [0, 1) shows the trend while the raw curve stays faintly behind it.
It is causal (uses no later step), so a live run's last point does not move when steps arrive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entropymon.errors import InputError


def ema(values, weight: float) -> np.ndarray:
    """s_t = weight * s_prev + (1 - weight) * x_t over the finite entries of ``values`` (n,);
    NaN entries stay NaN and are skipped. ``weight`` = 0 returns the values unchanged."""
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0.0 <= weight < 1.0:
        raise InputError(f"weight: expected a smoothing weight in [0, 1), got {weight!r}")
    values = np.asarray(values, dtype=np.float64)
    if weight == 0.0:
        return values.copy()
    out = np.full_like(values, np.nan)
    present = np.isfinite(values)
    smoothed = pd.Series(values[present]).ewm(alpha=1.0 - weight, adjust=False).mean()
    out[present] = smoothed.to_numpy()
    return out
