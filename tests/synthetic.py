"""A test fixture: a realistic synthetic run written with the real writer, for the dashboard tests,
the dashboard benchmark and trying the dashboard without a trainer (not shipped in the package).

Why: the dashboard must be exercised on logs shaped like a collapsing GRPO run - entropy
falling, reward rising along R = -a*e^H + b, zero-spread groups growing, completions with text
and sampled token rows - without training anything. Values are drawn from a seeded generator,
so a test can recompute any of them.
"""

from __future__ import annotations

import numpy as np

from entropymon.log.writer import RunLog

WORDS = ("the", "sum", "is", "so", "we", "add", "carry", "then", "answer", "check", "first", "next", "digit")
LAW_A, LAW_B = 0.3, 1.2  # ceiling b - a = 0.9


def entropy_curve(steps: np.ndarray, start: float = 1.2, floor: float = 0.2, tau: float = 40.0) -> np.ndarray:
    """Mean token entropy (nats) at ``steps``: exponential decay from ``start`` to ``floor``."""
    return floor + (start - floor) * np.exp(-steps / tau)


def histogram_counts(values: np.ndarray, edges) -> np.ndarray:
    """Counts of ``values`` per bin [edges[i], edges[i+1]); values past either end go to the end bins."""
    edges = np.asarray(edges, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)
    return np.bincount(index, minlength=edges.size - 1)


def step_metrics(step: int, rng: np.random.Generator, tau: float = 40.0) -> dict:
    """The scalar metrics of one step of the synthetic run."""
    h = float(entropy_curve(np.array([step]), tau=tau)[0] + rng.normal(0, 0.01))
    reward = float(np.clip(LAW_B - LAW_A * np.exp(h) + rng.normal(0, 0.01), 0, 1))
    cov = max(0.0, 0.02 * np.exp(-step / tau) + rng.normal(0, 0.001))
    pass1 = reward
    zero_std = float(np.clip(0.1 + 0.6 * (1 - np.exp(-step / tau)) + rng.normal(0, 0.02), 0, 1))
    metrics = {
        "entropy_mean": h, "entropy_seq_mean": h * 1.05, "entropy_p10": 0.01 * h, "entropy_p50": 0.2 * h,
        "entropy_p80": 0.9 * h, "entropy_p90": 1.6 * h, "forking_share": float(np.clip(0.35 * h, 0, 1)),
        "cov_logp_adv": cov, "cov_logp_piadv": 0.3 * cov, "cov_sum_pos_adv": 40 * cov, "cov_sum_neg_adv": -25 * cov,
        "cov_top_0_2pct_share": float(np.clip(0.3 + 0.2 * rng.random(), 0, 1)),
        "cov_top_0_02pct_share": float(np.clip(0.1 + 0.1 * rng.random(), 0, 1)),
        "reward_mean": reward, "reward_std": 0.4, "zero_std_group_frac": zero_std,
        "pass_at_1": pass1, "pass_at_4": 1 - (1 - pass1) ** 4 * (1 - zero_std * 0.5),
        "pass_at_8": 1 - (1 - pass1) ** 8 * (1 - zero_std * 0.5),
        "distinct_answer_frac": float(np.clip(0.8 - 0.5 * (1 - np.exp(-step / tau)), 0, 1)),
        "length_mean": 60 - 20 * (1 - np.exp(-step / tau)), "length_std": 8.0, "length_min": 20.0, "length_max": 90.0,
        "ess_frac": float(np.clip(0.95 - 0.001 * step, 0, 1)), "kl_target_modes": 1 + 3 * np.exp(-step / tau),
        "kl_target_entropy": float(np.log(1 + 3 * np.exp(-step / tau))),
    }
    if step % 10 == 0:  # the dH probe: same-batch change ~ the logit-space prediction, split by token class
        dh = -0.5 * cov + rng.normal(0, 0.002)
        metrics.update(dh_same_batch=dh, dh_same_batch_seq=dh, dh_pred_logit=-0.5 * cov, dh_probe_tokens=500.0,
                       dh_sum=500 * dh, dh_sum_pos_adv=400 * dh, dh_sum_zero_adv=20 * dh, dh_sum_neg_adv=80 * dh,
                       dh_sum_forking=350 * dh, dh_sum_top_0_2pct_cov=5 * dh)
    if step % 10 == 0:
        metrics["eval_accuracy"] = float(np.clip(reward - 0.05 + rng.normal(0, 0.01), 0, 1))
    try:
        from entropymon.metrics.stats import ENTROPY_HIST_EDGES
    except ImportError:  # histogram edges not available: the run simply has no histogram
        return metrics
    metrics["entropy_hist"] = histogram_counts(rng.exponential(h, size=2000), ENTROPY_HIST_EDGES).tolist()
    return metrics


def step_samples(step: int, rng: np.random.Generator, n_groups: int = 4, group_size: int = 4,
                 with_text: bool = True) -> dict:
    """One step's completions: groups of ``group_size`` with 0/1 rewards and GRPO advantages."""
    n = n_groups * group_size
    h = float(entropy_curve(np.array([step]))[0])
    p_correct = float(np.clip(LAW_B - LAW_A * np.exp(h), 0, 1))
    reward = (rng.random(n) < p_correct).astype(np.float64)
    groups = np.repeat(np.arange(n_groups), group_size)
    grouped = reward.reshape(n_groups, group_size)
    advantage = ((grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-4)).ravel()
    length = rng.integers(8, 20, size=n)
    columns = {
        "sample_id": np.arange(n), "group_id": groups, "reward": reward, "advantage": advantage,
        "length": length.astype(np.int64), "entropy_mean": rng.exponential(h, size=n),
        "entropy_max": rng.exponential(3 * h, size=n) + h,
    }
    if with_text:
        columns["text"] = [" ".join(rng.choice(WORDS, size=int(k))) for k in length]
        columns["answer"] = [str(int(v)) for v in rng.integers(0, 3, size=n)]
    return columns


def step_tokens(step: int, samples: dict, rng: np.random.Generator, n_samples: int = 4) -> dict:
    """Token rows of ``n_samples`` completions spread over the groups: one row per word of their text."""
    h = float(entropy_curve(np.array([step]))[0])
    rows = {k: [] for k in ("sample_id", "position", "token_id", "token_text", "entropy", "logprob", "advantage", "cov")}
    n = len(samples["sample_id"])
    for sample in np.unique(np.linspace(0, n - 1, min(n_samples, n)).astype(np.int64)).tolist():
        words = samples["text"][sample].split(" ")
        for position, word in enumerate(words):
            entropy = float(rng.exponential(h))
            logprob = float(-rng.exponential(0.5 * h))
            rows["sample_id"].append(sample)
            rows["position"].append(position)
            rows["token_id"].append(WORDS.index(word))
            rows["token_text"].append(word if position == 0 else " " + word)
            rows["entropy"].append(entropy)
            rows["logprob"].append(logprob)
            rows["advantage"].append(float(samples["advantage"][sample]))
    logp = np.asarray(rows["logprob"])
    adv = np.asarray(rows["advantage"])
    rows["cov"] = ((logp - logp.mean()) * (adv - adv.mean())).tolist()
    return rows


def write_synthetic_run(logdir, run: str, steps: int = 120, *, start: int = 0, seed: int = 0,
                        token_every: int = 10, with_samples: bool = True) -> str:
    """Write steps [start, start + steps) of a synthetic run (appending to an existing run
    folder of that name); returns the run folder path."""
    rng = np.random.default_rng(seed + start)
    with RunLog(logdir, run=run, config={"synthetic": True, "seed": seed}) as log:
        for step in range(start, start + steps):
            log.log_step(step, step_metrics(step, rng))
            if with_samples:
                samples = step_samples(step, rng)
                log.log_samples(step, samples)
                if token_every and step % token_every == 0:
                    log.log_tokens(step, step_tokens(step, samples, rng))
        path = log.path
    return str(path)
