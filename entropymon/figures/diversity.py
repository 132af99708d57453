"""The diversity panel and the off-policy/KL panel: signs of collapse beyond entropy.

Why: entropy can look healthy while groups stop disagreeing (zero-std groups give GRPO no
gradient), pass@k converges to pass@1, answers repeat and lengths shrink; ESS and the number of
modes the KL-regularised target wants explain what the update itself pushes towards.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from entropymon.figures.curves import lines_figure
from entropymon.figures.downsample import DEFAULT_MAX_POINTS
from entropymon.figures.style import NOT_LOGGED_HEIGHT


def zero_std_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
                    max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    return lines_figure(frame, ("zero_std_group_frac",), "Groups with zero reward spread", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points)


def distinct_answers_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
                            max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    columns = ["distinct_answer_frac", *sorted(c for c in frame.columns if str(c).startswith("distinct_") and
                                                 str(c)[9:].isdigit()), "ngram_overlap"]
    return lines_figure(frame, columns, "Distinct answers and n-grams", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points, y_title="fraction")


def ess_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
               max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    return lines_figure(frame, ("ess_frac",), "Effective sample size / N", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points,
                        missing="Not logged in this run: ess_frac (needs old log-probs)",
                        missing_height=NOT_LOGGED_HEIGHT)


def kl_modes_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
                    max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    return lines_figure(frame, ("kl_target_modes",), "Modes the KL-optimal target wants", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points,
                        missing="Not logged in this run: kl_target_modes (needs reference log-probs and kl_beta)",
                        missing_height=NOT_LOGGED_HEIGHT)
