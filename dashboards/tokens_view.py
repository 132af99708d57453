"""The token view: completions drawn as text, each token's background showing its entropy (or
its Cov_i), and the token strings that fork most.

Why: the aggregate curves say entropy is collapsing; reading where in a completion the policy
still hesitates (and which tokens carry the covariance) says why. Colours are a translucent red
whose opacity grows with entropy (0 at zero entropy, full at the view's largest value), or for
Cov_i red for positive and blue for negative, scaled by the largest |Cov_i|: dark text stays
readable on every background. Pure functions (DataFrames in, Dash components or DataFrames out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from dash import html

from entropymon.display import number
from entropymon.errors import InputError

FORKING_THRESHOLD = 0.672  # nats, Wang et al. 2025
MAX_ALPHA = 0.85
ADVANTAGE_SIGNS = ("all", "positive", "negative")
COLOR_BY = ("entropy", "cov")


def filter_samples(samples: pd.DataFrame, *, step=None, reward_range=None, advantage_sign: str = "all") -> pd.DataFrame:
    """The sample rows of ``step`` (None: all), with ``reward`` in the closed ``reward_range``
    (None: any) and the advantage sign asked for ("all", "positive" > 0, "negative" < 0)."""
    if advantage_sign not in ADVANTAGE_SIGNS:
        raise InputError(f"advantage_sign: expected one of {ADVANTAGE_SIGNS}, got {advantage_sign!r}")
    keep = np.ones(len(samples), dtype=bool)
    if step is not None:
        keep &= samples["step"].to_numpy() == step
    if reward_range is not None and "reward" in samples.columns:
        reward = pd.to_numeric(samples["reward"], errors="coerce").to_numpy(np.float64)
        keep &= (reward >= reward_range[0]) & (reward <= reward_range[1])
    if advantage_sign != "all" and "advantage" in samples.columns:
        advantage = pd.to_numeric(samples["advantage"], errors="coerce").to_numpy(np.float64)
        keep &= advantage > 0 if advantage_sign == "positive" else advantage < 0
    return samples[keep]


def token_backgrounds(values, color_by: str = "entropy") -> list[str]:
    """CSS colours for ``values`` (n,): entropy -> rgba(red, alpha = value / max); cov ->
    red (positive) or blue (negative) with alpha = |value| / max |value|. NaN -> transparent."""
    if color_by not in COLOR_BY:
        raise InputError(f"color_by: expected one of {COLOR_BY}, got {color_by!r}")
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    scale = float(np.max(np.abs(values[finite]))) if finite.any() else 0.0
    alpha = np.zeros_like(values) if scale == 0 else np.where(finite, np.abs(values) / scale, 0.0) * MAX_ALPHA
    colors = []
    for value, a in zip(values, alpha):
        if color_by == "cov" and value < 0:
            colors.append(f"rgba(31, 119, 180, {a:.3f})")
        else:
            colors.append(f"rgba(214, 39, 40, {a:.3f})")
    return colors


def _token_strings(tokens: pd.DataFrame) -> list[str]:
    if "token_text" in tokens.columns:
        texts = tokens["token_text"]
        ids = tokens["token_id"] if "token_id" in tokens.columns else pd.Series([""] * len(tokens), index=tokens.index)
        return [t if isinstance(t, str) else f"⟨{i}⟩" for t, i in zip(texts, ids)]
    return [f"⟨{i}⟩" for i in tokens["token_id"]]


def completion_spans(tokens: pd.DataFrame, color_by: str = "entropy", scale_values=None) -> list:
    """One ``html.Span`` per token row (sorted by position), background by ``color_by``; the
    hover title gives the token's entropy, log-prob and Cov_i. ``scale_values``: the values the
    colour scale is normalised over (default: these tokens' own)."""
    tokens = tokens.sort_values("position") if "position" in tokens.columns else tokens
    column = "entropy" if color_by == "entropy" else "cov"
    values = pd.to_numeric(tokens[column], errors="coerce").to_numpy(np.float64) if column in tokens.columns \
        else np.full(len(tokens), np.nan)
    reference = values if scale_values is None else np.asarray(scale_values, dtype=np.float64)
    colors = token_backgrounds(np.r_[values, reference], color_by)[: len(values)]
    spans = []
    for text, color, row in zip(_token_strings(tokens), colors, tokens.itertuples(index=False)):
        details = [f"{name} {number(getattr(row, name), 4)}" for name in ("entropy", "logprob", "cov")
                   if hasattr(row, name) and pd.notna(getattr(row, name))]
        spans.append(html.Span(text, title=", ".join(details), className="token",
                               style={"backgroundColor": color}))
    return spans


def shown_count(n_matching: int, max_completions: int, n_step: int) -> html.P:
    """"k of n completions shown": how many of the filtered completions the view draws (and of the step's)."""
    k = min(n_matching, max_completions)
    text = f"{k} of {n_matching} completions shown"
    if n_matching != n_step:
        text += f" ({n_matching} of the step's {n_step} match the filters)"
    return html.P(text, className="completions-count")


def completions_view(samples: pd.DataFrame, tokens: pd.DataFrame, color_by: str = "entropy",
                     max_completions: int = 20) -> list:
    """A block per completion (at most ``max_completions``): its prompt when logged, a header with
    reward, advantage and entropy, then the coloured tokens (or the plain text when no token rows
    were sampled)."""
    if samples.empty:
        return [html.P("No completions match these filters.", className="message")]
    column = "entropy" if color_by == "entropy" else "cov"
    scale = tokens[column] if column in tokens.columns else None
    by_sample = dict(iter(tokens.groupby(["rank", "sample_id"], sort=False))) if not tokens.empty else {}
    if by_sample:  # completions with token rows first: they are what this view is for
        has_tokens = [(r, s) in by_sample for r, s in zip(samples["rank"], samples["sample_id"])]
        samples = samples.iloc[np.argsort(~np.asarray(has_tokens), kind="stable")]
    blocks = []
    for row in samples.head(max_completions).itertuples(index=False):
        header = [f"step {row.step}", f"sample {row.sample_id}"]
        for name in ("reward", "advantage", "entropy_mean"):
            value = getattr(row, name, None)
            if value is not None and pd.notna(value):
                header.append(f"{name} {value:.3g}")
        token_rows = by_sample.get((row.rank, row.sample_id))
        if token_rows is not None:
            body = completion_spans(token_rows, color_by, scale)
        else:  # say so, or plain text would read as tokens of zero entropy
            header.append("text only: its tokens were not sampled")
            text = getattr(row, "text", None)
            body = [html.Span(text if isinstance(text, str) else "(no text or token rows logged for this completion)",
                              className="plain")]
        parts = [html.Div(" · ".join(header), className="completion-header"),
                 html.Div(body, className="completion-text")]
        prompt = getattr(row, "prompt", None)
        if isinstance(prompt, str) and prompt:
            parts.insert(0, html.Div(["prompt: ", html.Span(prompt, className="plain")], className="completion-prompt"))
        blocks.append(html.Div(parts, className="completion"))
    return blocks


def visible_whitespace(token: str) -> str:
    """``token`` with leading and trailing spaces shown as "␣", so " digit" and "digit" (two
    different tokens) read differently in a table."""
    core = token.strip(" ")
    if not core:
        return "␣" * len(token)
    left = len(token) - len(token.lstrip(" "))
    right = len(token) - len(token.rstrip(" "))
    return "␣" * left + core + "␣" * right


def forking_tokens(tokens: pd.DataFrame, threshold: float = FORKING_THRESHOLD, top: int = 20) -> pd.DataFrame:
    """The token strings that fork most: per token, how often it appears, how often its entropy
    exceeds ``threshold``, that rate and its mean entropy; sorted by forking count."""
    columns = ["token", "count", "forking", "forking_rate", "mean_entropy"]
    if tokens.empty or "entropy" not in tokens.columns:
        return pd.DataFrame(columns=columns)
    entropy = pd.to_numeric(tokens["entropy"], errors="coerce")
    frame = pd.DataFrame({"token": _token_strings(tokens), "entropy": entropy.to_numpy(),
                          "forks": (entropy > threshold).to_numpy()})
    grouped = frame.groupby("token", sort=False).agg(count=("entropy", "size"), forking=("forks", "sum"),
                                                    mean_entropy=("entropy", "mean")).reset_index()
    grouped["forking_rate"] = grouped["forking"] / grouped["count"]
    grouped = grouped.sort_values(["forking", "mean_entropy"], ascending=False, kind="stable").head(top)
    return grouped[columns].reset_index(drop=True)
