"""Benchmark: how fast the law fit and its backtests are, against a plain NumPy baseline.

Why: the dashboard and `entropymon summary` refit and backtest on every refresh, so both must
stay in the millisecond range for runs of thousands of steps. The baseline is the naive way to
get the same bootstrap: a Python loop of `np.linalg.lstsq` calls, timed in the same run.

Run: python benchmarks/analysis.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from entropymon.analysis import backtest, fit_entropy_law, forecast_ceiling


def _law_run(n_steps: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    step = np.arange(n_steps)
    entropy = 0.15 + 0.6 * np.exp(-step / (n_steps / 4)) + rng.normal(0, 0.01, n_steps)
    reward = -0.3 * np.exp(entropy) + 1.0 + rng.normal(0, 0.02, n_steps)
    return pd.DataFrame({"step": step, "entropy_mean": entropy, "reward_mean": reward})


def _best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _loop_bootstrap(entropy: np.ndarray, reward: np.ndarray, n_bootstrap: int) -> None:
    rng = np.random.default_rng(0)
    design = np.column_stack([np.exp(entropy), np.ones_like(entropy)])
    for _ in range(n_bootstrap):
        idx = rng.integers(0, entropy.size, entropy.size)
        np.linalg.lstsq(design[idx], reward[idx], rcond=None)


def main() -> None:
    print(f"{'case':<42} {'entropymon':>12} {'baseline':>12} {'ratio':>8}")
    for n in (60, 1_000, 10_000):
        frame = _law_run(n)
        h, r = frame["entropy_mean"].to_numpy(), frame["reward_mean"].to_numpy()
        ours = _best_of(lambda h=h, r=r: fit_entropy_law(h, r, n_bootstrap=1000))
        base = _best_of(lambda h=h, r=r: _loop_bootstrap(h, r, 1000), repeats=2)
        print(f"{f'fit, {n} points, 1000 bootstrap':<42} {ours * 1e3:>10.1f}ms {base * 1e3:>10.1f}ms {ours / base:>8.3f}")
    for n in (1_000, 10_000):
        frame = _law_run(n)
        t_backtest = _best_of(lambda frame=frame: backtest(frame), repeats=3)
        t_forecast = _best_of(lambda frame=frame: forecast_ceiling(frame), repeats=3)
        print(f"{f'backtest, {n} steps (40 origins)':<42} {t_backtest * 1e3:>10.1f}ms")
        print(f"{f'forecast_ceiling (verdict), {n} steps':<42} {t_forecast * 1e3:>10.1f}ms")


if __name__ == "__main__":
    main()
