"""The one registry of every metric name entropymon writes.

Why one place: the README table, the dashboard's hover text, the CLI and a test that every
emitted name is documented all read from here, so a metric cannot exist without a description
and a unit. Names are ``snake_case``; families with a parameter (``pass_at_8``, ``trl/kl``) are
registered once as a pattern. No torch here: the dashboard and the analysis import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """A metric name, a one-line description, its unit and how values from ranks combine.

    ``merge`` says how the reader combines the rows of several ranks for one step:
    ``stats`` - recomputed exactly from the ``stat/`` sufficient-statistic columns;
    ``sum`` / ``max`` / ``min`` - that reduction; ``first`` - identical on every rank;
    ``approx`` - recomputed from merged histograms (exact on one rank, binned across ranks).
    """

    name: str
    description: str
    unit: str
    table: str = "steps"
    merge: str = "stats"


_STEP_METRICS = [
    # entropy (nats, at the sampling temperature recorded in entropy_temperature)
    ("entropy_mean", "Token-mean policy entropy over all valid completion tokens (TRL's aggregation)", "nats", "stats"),
    ("entropy_seq_mean", "Mean over sequences of each sequence's token-mean entropy (Entropy Mechanism paper, Eq. 5)", "nats", "stats"),
    ("entropy_p10", "10th percentile of token entropy", "nats", "approx"),
    ("entropy_p50", "Median token entropy", "nats", "approx"),
    ("entropy_p80", "80th percentile of token entropy: the threshold above which the top 20% 'forking' tokens lie", "nats", "approx"),
    ("entropy_p90", "90th percentile of token entropy", "nats", "approx"),
    ("entropy_max", "Largest token entropy in the step", "nats", "max"),
    ("forking_share", "Share of tokens whose entropy exceeds 0.672 nats (high-entropy 'forking' tokens)", "fraction", "stats"),
    ("entropy_hist", "Token counts per fixed entropy bin (edges in entropymon.metrics.stats.ENTROPY_HIST_EDGES)", "count", "sum"),
    ("entropy_temperature", "Sampling temperature the logits were divided by before entropy was computed", "", "first"),
    ("surprisal_mean", "Mean -log pi of the sampled tokens: an unbiased estimate of mean entropy when logits are unavailable", "nats", "stats"),
    ("n_tokens", "Valid (unmasked) completion tokens observed in the step", "tokens", "sum"),
    ("n_sequences", "Completions observed in the step", "sequences", "sum"),
    # covariance (Cui et al. 2025)
    ("cov_logp_adv", "Batch Cov(log pi, A) over valid tokens; entropy change ~ -eta * this under natural policy gradient", "nats", "stats"),
    ("cov_logp_piadv", "Batch Cov(log pi, pi*A); entropy change ~ -eta * this under vanilla policy gradient", "nats", "stats"),
    ("cov_sum_pos_adv", "Sum of per-token Cov_i over tokens with positive advantage (the main drivers of collapse)", "nats", "sum"),
    ("cov_sum_neg_adv", "Sum of per-token Cov_i over tokens with negative advantage", "nats", "sum"),
    ("cov_top_0_02pct_share", "Share of sum(Cov_i) carried by the top 0.02% of tokens by Cov_i", "fraction", "approx"),
    ("cov_top_0_2pct_share", "Share of sum(Cov_i) carried by the top 0.2% of tokens by Cov_i", "fraction", "approx"),
    ("cov_top_0_02pct_mean", "Mean Cov_i of the top 0.02% of tokens (paper's Table 1 reports 5.654 vs batch mean 0.003)", "nats", "approx"),
    # same-batch entropy change of an optimizer step (the dH probe, every dh_probe_every steps)
    ("dh_same_batch", "Token-mean entropy change of the optimizer step at the same sequences and positions (after minus before the update)", "nats", "stats"),
    ("dh_same_batch_seq", "Mean over sequences of each sequence's token-mean same-batch entropy change", "nats", "stats"),
    ("dh_pred_logit", "Token-mean first-order prediction of dh_same_batch from the logit change dz: -Cov_{a~pi}(log pi, dz) per position", "nats", "stats"),
    ("dh_pred_token_r", "Pearson correlation, over the probed tokens of the step, of the predicted and the measured per-token entropy change", "", "stats"),
    ("dh_sum", "Sum of the per-token same-batch entropy change over the probed tokens", "nats", "stats"),
    ("dh_sum_pos_adv", "Sum of the per-token same-batch entropy change over tokens with positive advantage", "nats", "stats"),
    ("dh_sum_zero_adv", "Sum of the per-token same-batch entropy change over tokens with zero advantage", "nats", "stats"),
    ("dh_sum_neg_adv", "Sum of the per-token same-batch entropy change over tokens with negative advantage", "nats", "stats"),
    ("dh_sum_forking", "Sum of the per-token same-batch entropy change over forking tokens (entropy before the update > 0.672 nats); the rest is dh_sum minus it", "nats", "stats"),
    ("dh_sum_top_0_02pct_cov", "Sum of the per-token same-batch entropy change over the top 0.02% of tokens by Cov_i (KL-Cov's default set); the rest is dh_sum minus it", "nats", "approx"),
    ("dh_sum_top_0_2pct_cov", "Sum of the per-token same-batch entropy change over the top 0.2% of tokens by Cov_i; the rest is dh_sum minus it", "nats", "approx"),
    ("dh_entropy_before", "Token-mean entropy of the probed tokens before the update, from the probe's own forward (equals entropy_mean on the same batch)", "nats", "stats"),
    ("dh_probe_tokens", "Tokens the dH probe measured in the step", "tokens", "stats"),
    # rewards and groups
    ("reward_mean", "Mean reward of the step's completions", "reward", "stats"),
    ("reward_std", "Standard deviation of the step's rewards", "reward", "stats"),
    ("advantage_mean", "Mean advantage of the step's completions", "", "stats"),
    ("advantage_std", "Standard deviation of the step's advantages", "", "stats"),
    ("zero_std_group_frac", "Fraction of groups whose rewards all agree: their GRPO advantages are zero and give no gradient", "fraction", "stats"),
    ("n_groups", "Groups (prompts) in the step", "groups", "sum"),
    ("distinct_answer_frac", "Mean over groups of distinct final answers / group size", "fraction", "stats"),
    ("ngram_overlap", "Mean pairwise Jaccard overlap of completions' n-gram sets within a group", "fraction", "stats"),
    ("length_mean", "Mean completion length", "tokens", "stats"),
    ("length_std", "Standard deviation of completion length", "tokens", "stats"),
    ("length_min", "Shortest completion", "tokens", "min"),
    ("length_max", "Longest completion", "tokens", "max"),
    # off-policy and KL
    ("ess_frac", "Effective sample size of importance weights exp(log pi - log pi_old), divided by N", "fraction", "stats"),
    ("kl_target_entropy", "Mean over groups of the entropy of the KL-optimal target softmax(log pi_ref + R/beta) over sampled completions", "nats", "stats"),
    ("kl_target_modes", "Mean over groups of exp(kl_target_entropy): how many completions the KL objective itself wants", "completions", "stats"),
    # training context
    ("lr", "Learning rate at the step", "", "first"),
    ("eval_accuracy", "Held-out accuracy (the law's true R when present)", "fraction", "first"),
    ("time", "Wall-clock time the step's row was made (Unix seconds)", "s", "max"),
    # health of the monitor itself
    ("dropped_rows", "Rows dropped because the writer's queue was full (cumulative)", "rows", "sum"),
    ("monitor_errors", "Observations the monitor could not process (cumulative; see warnings)", "count", "sum"),
    ("monitor_bad_rows", "Rows skipped by the NaN policy: NaN/inf, a log-prob > 0 or an entropy < 0 (cumulative)", "rows", "sum"),
]

_PATTERNS = [
    (r"pass_at_(\d+)", "Unbiased pass@{0} (Chen et al. 2021), mean over groups; converging to pass_at_1 signals collapse", "fraction", "stats"),
    (r"distinct_(\d)", "Distinct {0}-grams / total {0}-grams over a group's completions, mean over groups", "fraction", "stats"),
    (r"reward_func/(.+)", "Mean reward of reward function '{0}'", "reward", "stats"),
    (r"trl/(.+)", "TRL's own logged scalar '{0}' (for comparison with entropymon's)", "", "first"),
    (r"hf/(.+)", "A scalar the Hugging Face Trainer logged: '{0}'", "", "first"),
    (r"import/(.+)", "A scalar kept as-is from an imported log: '{0}'", "", "first"),
    (r"stat/(.+)", "Sufficient statistic '{0}' used to combine ranks exactly (not shown)", "", "sum"),
]

_SAMPLE_COLUMNS = [
    ("sample_id", "Index of the completion within its step and rank", ""),
    ("group_id", "Prompt/group the completion belongs to", ""),
    ("reward", "Total reward of the completion", "reward"),
    ("advantage", "Advantage of the completion", ""),
    ("length", "Completion length", "tokens"),
    ("entropy_mean", "Token-mean entropy of the completion", "nats"),
    ("entropy_max", "Largest token entropy of the completion", "nats"),
    ("text", "Completion text (optional)", ""),
    ("answer", "Extracted final answer (optional)", ""),
    ("prompt", "Prompt text (optional)", ""),
]

_TOKEN_COLUMNS = [
    ("sample_id", "Completion the token belongs to", ""),
    ("position", "Position of the token in the completion", ""),
    ("token_id", "Sampled token id", ""),
    ("token_text", "Decoded token (optional)", ""),
    ("entropy", "Entropy of the policy at this position", "nats"),
    ("logprob", "log pi of the sampled token", "nats"),
    ("advantage", "Advantage of the token (its sequence's, broadcast)", ""),
    ("cov", "Per-token Cov_i = (log pi_i - mean log pi)(A_i - mean A)", "nats"),
]

METRICS: dict[str, MetricInfo] = {n: MetricInfo(n, d, u, "steps", m) for n, d, u, m in _STEP_METRICS}
SAMPLE_COLUMNS: dict[str, MetricInfo] = {n: MetricInfo(n, d, u, "samples", "first") for n, d, u in _SAMPLE_COLUMNS}
TOKEN_COLUMNS: dict[str, MetricInfo] = {n: MetricInfo(n, d, u, "tokens", "first") for n, d, u in _TOKEN_COLUMNS}
PATTERNS = [(re.compile(p + r"\Z"), d, u, m) for p, d, u, m in _PATTERNS]
# the key columns of every table (the log writer gives them their types: log/schema.py)
STEP_COLUMN, RANK_COLUMN = "step", "rank"
KEY_COLUMNS = (STEP_COLUMN, RANK_COLUMN)

# The part a column plays, in the order a choice prefers it: every layer (analysis, CLI, report,
# dashboard) reads these lists, so "which columns are an entropy" has one answer.
ENTROPY_COLUMNS = ("entropy_mean", "entropy_seq_mean", "trl/entropy")  # policy entropy (nats)
ENTROPY_ESTIMATES = ("surprisal_mean",)  # estimates of it when logits were not available
PERFORMANCE_COLUMNS = ("eval_accuracy", "reward_mean", "trl/reward")  # held-out first, then proxies
COVARIANCE_LABELS = {"cov_logp_adv": "Cov(log π, A)", "cov_logp_piadv": "Cov(log π, π·A)"}
COVARIANCE_FORMS = tuple(COVARIANCE_LABELS)
# what the entropy change is compared with (analysis/dynamics.py): the two forms and the logit-space prediction
PREDICTOR_LABELS = {"dh_pred_logit": "−Cov_a~π(log π, Δz)", **COVARIANCE_LABELS}
# dH ~ eta * sign * predictor: the covariances predict a fall when positive, the logit-space form is dH itself
PREDICTOR_SIGN = {"cov_logp_adv": -1.0, "cov_logp_piadv": -1.0, "dh_pred_logit": 1.0}
PASS_AT_K = re.compile(r"pass_at_(\d+)\Z")


def pass_at_k_columns(columns) -> list[str]:
    """The ``pass_at_<k>`` names among ``columns``, sorted by k."""
    found = [(int(m.group(1)), str(c)) for c in columns if (m := PASS_AT_K.match(str(c)))]
    return [c for _, c in sorted(found)]


def describe_metric(name: str) -> MetricInfo | None:
    """The registry entry for a steps-table column name, or None when it is not registered."""
    info = METRICS.get(name)
    if info is not None:
        return info
    for regex, description, unit, merge in PATTERNS:
        match = regex.match(name)
        if match:
            return MetricInfo(name, description.format(*match.groups()), unit, "steps", merge)
    return None


def is_registered(name: str) -> bool:
    return name in KEY_COLUMNS or describe_metric(name) is not None


def readme_table() -> str:
    """The Markdown table of step metrics that the README embeds (a test keeps them in sync)."""
    lines = ["| metric | unit | description |", "|---|---|---|"]
    for info in METRICS.values():
        lines.append(f"| `{info.name}` | {info.unit} | {info.description} |")
    for regex, description, unit, _ in _PATTERNS:
        lines.append(f"| `{regex}` | {unit} | {description.replace('{0}', 'X')} |")
    return "\n".join(lines)
