"""``entropymon summary``, ``fit`` and ``check``: the analysis of finished or running runs.

Why thin: every number comes from ``entropymon.analysis`` (``summarize_run``,
``forecast_ceiling``, ``early_prediction``, ``diagnose``); these commands choose what to print and
say in words whether the predicted ceiling deserves trust. The analysis is imported inside each
command so ``entropymon --help`` never pays for pandas and SciPy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from entropymon.cli import output
from entropymon.cli.options import open_run, parse_bounds, parse_rules, parse_smoothing, parse_thresholds, parse_warmup
from entropymon.display import SEVERITIES, change, health_label, interval, law_formula, number, trust_word, verdict

# ``entropymon check`` exit codes (documented in its help and the README)
EXIT_HEALTHY = 0
EXIT_ALERT = 3
FAIL_LEVELS = SEVERITIES

RunsArg = Annotated[list[Path], typer.Argument(help="Run folders (each holds a run.json).", metavar="RUN",
                                               show_default=False)]
RunArg = Annotated[Path, typer.Argument(help="A run folder (holds a run.json).", metavar="RUN", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
PerformanceOpt = Annotated[str, typer.Option(help="Performance column, or 'auto' (eval_accuracy, else reward_mean).")]
EntropyOpt = Annotated[str, typer.Option(help="Entropy column the law uses.")]
BoundsOpt = Annotated[str, typer.Option(help="Range of the performance metric: 'auto', 'none' or LOW,HIGH.")]


def summary(
    runs: RunsArg,
    as_json: JsonOpt = False,
    performance: PerformanceOpt = "auto",
    entropy: EntropyOpt = "entropy_mean",
    bounds: BoundsOpt = "auto",
) -> None:
    """Key figures per run, the predicted ceiling and whether to trust it.

    Steps, entropy and performance at start and end, the predicted ceiling with its interval,
    its backtest skill against naive baselines (last value, fit-window mean, linear trend), the
    trust verdict in words, and the collapse alerts that fired.
    """
    from entropymon.analysis.summary import summarize_run

    bounds_value = parse_bounds(bounds)
    summaries = [
        summarize_run(open_run(path), performance=performance, entropy=entropy, bounds=bounds_value)
        for path in runs
    ]
    for path, item in zip(runs, summaries):
        item["path"] = str(path)
    if as_json:
        output.print_json(summaries)
        return
    table = Table(title="entropymon summary")
    for column in ("run", "steps", "entropy", "performance", "ceiling [interval]", "skill", "trust", "health (alerts)"):
        table.add_column(column, overflow="fold")
    for item in summaries:
        table.add_row(
            item["run"],
            f"{item['steps']} ({number(item['first_step'], 9)}-{number(item['last_step'], 9)})",
            change(item["entropy_start"], item["entropy_end"]),
            f"{item['performance_column'] or '-'}: {change(item['performance_start'], item['performance_end'])}",
            f"{number(item['ceiling'])} {interval(item['ceiling_ci'])}",
            number(item.get("skill"), 2),
            trust_word(item["trustworthy"]),
            health_label(item["health"], len(item["alerts"])),
        )
    output.stdout.print(table)
    for item in summaries:
        if item.get("performance_reason"):
            output.stdout.print(f"{item['run']}: performance series {item['performance_reason']}", markup=False)
        output.stdout.print(f"{item['run']}: {verdict(item['trustworthy'], item['reason'])}", markup=False)
        backtest = (item.get("forecast") or {}).get("backtest") or {}
        if backtest.get("recent_baseline_rmse"):
            shown = ", ".join(f"{name.replace('_', ' ')} {number(value)}"
                              for name, value in backtest["recent_baseline_rmse"].items())
            output.stdout.print(f"  backtest RMSE over the last {backtest['n_recent']} origins: law "
                                f"{number(backtest['recent_law_rmse'])}; baselines: {shown}", markup=False)
        explanation = (item.get("dynamics") or {}).get("explanation")
        if explanation:
            output.stdout.print(f"  entropy change: {explanation}", markup=False)
        for alert in item["alerts"]:
            print_alert(alert, prefix="  ")


def print_alert(alert: dict, prefix: str = "") -> None:
    """An alert as the CLI prints it: severity, step (and when it was first visible), message, remedies."""
    seen = alert.get("first_visible_step")
    when = number(alert["step"], 9)
    if seen is not None and seen != alert["step"]:
        when += f" (visible at {number(seen, 9)})"
    output.stdout.print(f"{prefix}{alert['severity']} at step {when}: [{alert['rule']}] {alert['message']}",
                        markup=False)
    for remedy in alert.get("remedies") or []:
        settings = "; ".join(f"{name}: {remedy[key]}" for key, name in (("trl", "TRL"), ("verl", "veRL"))
                             if remedy.get(key))
        output.stdout.print(f"{prefix}  try: {remedy['action']} ({settings}) - {remedy['paper']}", markup=False)


def fit(
    run: RunArg,
    fraction: Annotated[float, typer.Option(help="Share of the first steps the early prediction is fitted on.")] = 0.15,
    performance: PerformanceOpt = "auto",
    entropy: EntropyOpt = "entropy_mean",
    smoothing: Annotated[Optional[str], typer.Option(
        help="Smooth entropy and performance first: 'none', an EMA alpha such as 0.3, or a window such as 5.")] = None,
    warmup: Annotated[str, typer.Option(
        help="Leading points to leave out: 'auto' (before an early entropy peak), 'none', or a count.")] = "auto",
    bounds: BoundsOpt = "auto",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.", min=0)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Fit the law R = -a*e^H + b and say how far its ceiling can be trusted.

    Fits the law on the run, backtests it against naive baselines (last value, fit-window mean,
    linear trend) and scores an early prediction fitted on the first --fraction of the steps.
    Says plainly when the law does not predict this run.
    """
    from entropymon.analysis._frame import performance_reason, step_frame
    from entropymon.analysis.forecast import forecast_ceiling
    from entropymon.analysis.law import LawOptions
    from entropymon.analysis.prediction import early_prediction
    from entropymon.errors import AnalysisError, InputError

    if not 0.0 < fraction < 1.0:
        raise InputError(f"--fraction: expected a share in (0, 1), got {fraction}")
    the_run = open_run(run)
    warmup_value = parse_warmup(warmup)
    n_steps = int(the_run.steps["step"].nunique()) if len(the_run.steps) else 0
    if isinstance(warmup_value, int) and warmup_value >= n_steps:
        raise InputError(f"--warmup: expected fewer leading points to leave out than the run's {n_steps} steps, "
                         f"got {warmup_value}")
    options = LawOptions(performance=performance, entropy=entropy, smoothing=parse_smoothing(smoothing),
                         warmup=warmup_value, bounds=parse_bounds(bounds), n_bootstrap=bootstrap)
    forecast = forecast_ceiling(the_run, options=options)
    try:
        early = early_prediction(the_run, fraction, options=options).to_dict()
        early.pop("fit", None)
    except AnalysisError as error:
        early = {"fraction": fraction, "error": str(error)}
    result = {"run": the_run.name, "path": str(run), **_forecast_dict(forecast), "early_prediction": early}
    column = (result.get("fit") or {}).get("performance_column") or forecast.backtest.performance_column
    if column:
        result["performance_reason"] = performance_reason(step_frame(the_run), performance, column)
    if as_json:
        output.print_json(result)
        return
    _print_fit(result)


def _forecast_dict(forecast) -> dict:
    out = forecast.to_dict()
    fit_dict = out.get("fit")
    if fit_dict is not None:
        for key in ("residuals", "entropy", "performance", "steps"):
            fit_dict.pop(key, None)  # per-point arrays: the library returns them, the CLI does not
    return out


def _print_fit(result: dict) -> None:
    fit_ = result.get("fit")
    out = output.stdout
    out.print(f"[bold]{result['run']}[/bold]", markup=True)
    if fit_ is not None:
        out.print(f"law: {law_formula(fit_['a'], fit_['b'])}   "
                  f"(a {interval(fit_['a_ci'])}, b {interval(fit_['b_ci'])})", markup=False)
        out.print(f"fitted on {fit_['n']} points of {fit_['performance_column']} against {fit_['entropy_column']}, "
                  f"smoothing {fit_['smoothing']}, R² {number(fit_['r2'])}, RMSE {number(fit_['rmse'])}",
                  markup=False)
        for note in fit_.get("notes") or []:
            out.print(f"note: {note}", markup=False)
    if result.get("performance_reason"):
        out.print(f"performance series: {result['performance_reason']}", markup=False)
    if fit_ is not None:
        out.print(f"ceiling (R at H = 0): {number(fit_['ceiling'])} {interval(fit_['ceiling_ci'])}"
                  + ("" if result.get("ceiling") is not None else "  (not a prediction)"), markup=False)
    backtest = result["backtest"]
    table = Table(title=f"backtest over {backtest['n_origins']} origins (skill over the last {backtest['n_recent']})")
    for column in ("forecast", "RMSE (recent origins)", "RMSE (all origins)"):
        table.add_column(column)
    table.add_row("law", number(backtest["recent_law_rmse"]), number(backtest["law_rmse"]))
    for name, value in (backtest.get("recent_baseline_rmse") or {}).items():
        table.add_row(name.replace("_", " "), number(value), number(backtest["baseline_rmse"].get(name)))
    out.print(table)
    out.print(f"skill = 1 - RMSE law / RMSE best baseline: {number(result['skill'], 2)} (recent origins), "
              f"{number(backtest['skill'], 2)} (all origins)", markup=False)
    early = result["early_prediction"]
    if "error" in early:
        out.print(f"early prediction (first {early['fraction']:g} of the steps): not possible: {early['error']}",
                  markup=False)
    else:
        baselines = ", ".join(f"{k.replace('_', ' ')} {number(v)}" for k, v in early["baseline_rmse"].items())
        out.print(f"early prediction: fitted on {early['n_fit']} points (steps <= {number(early['cut_step'], 6)}), "
                  f"scored on {early['n_test']}: RMSE law {number(early['law_rmse'])} vs {baselines}; "
                  f"final-step error {number(early['law_final_error'])}; skill {number(early['skill'], 2)}",
                  markup=False)
        if early["skill"] is None or early["skill"] <= 0:
            out.print(f"  -> fitted that early, the law predicted the rest no better than the "
                      f"{early['best_baseline'].replace('_', ' ')} forecast: it does not predict this run yet.",
                      markup=False)
    out.print(f"verdict: {verdict(result['trustworthy'], result['reason'])}", markup=False)


def rules_help() -> str:
    """The rule names with what each checks and its defaults, for ``check --help``."""
    from entropymon.analysis.alerts import RULES

    lines = [f"{name} ({rule.severity}): {rule.description.replace('`', '')}; defaults "
             + ", ".join(f"{key}={value}" for key, value in rule.defaults.items())
             for name, rule in RULES.items()]
    return "Rules (names for --rules and --threshold):\n\n" + "\n\n".join(lines)


def check(
    run: RunArg,
    rules: Annotated[Optional[str], typer.Option(help="Comma-separated rule names (default: all rules).")] = None,
    threshold: Annotated[Optional[list[str]], typer.Option(
        help="Override a rule's threshold: RULE=VALUE, or RULE.PARAMETER=VALUE (repeatable).")] = None,
    fail_on: Annotated[str, typer.Option(
        help="Lowest alert severity that makes the exit code 3: info, warning or critical.")] = "warning",
    as_json: JsonOpt = False,
) -> None:
    """Run the collapse rules on a run: what is wrong, the evidence, what to try; exit code 3 when one fires.

    Each alert names the step it began, the first step a live run could have shown it, the
    evidence and remedies (TRL GRPOConfig and veRL settings, with the paper). --json prints
    {"healthy", "health", "alerts": [{"rule", "severity", "step", "first_visible_step", "message",
    "evidence", "plot", "remedies"}]}. Exit codes: 0 healthy (no alert at or above --fail-on); 3 a
    rule fired (usable in CI and cron); 1 a usage error (missing run, unknown rule, bad threshold).
    """
    from entropymon.analysis.alerts import RULES, diagnose, health
    from entropymon.errors import AnalysisError, InputError

    if fail_on not in FAIL_LEVELS:
        raise InputError(f"--fail-on: expected one of {list(FAIL_LEVELS)}, got {fail_on!r}")
    the_run = open_run(run)
    if not len(the_run.steps):
        raise AnalysisError(f"RUN: {run} has no steps logged yet, so there is nothing to check "
                            "(healthy cannot be told from empty)")
    names = parse_rules(rules)
    alerts = diagnose(the_run, names, parse_thresholds(threshold))
    failing = [a for a in alerts if FAIL_LEVELS.index(a.severity) >= FAIL_LEVELS.index(fail_on)]
    checked = names or list(RULES)
    if as_json:
        output.print_json({"run": the_run.name, "rules": checked, "healthy": not failing, "health": health(alerts),
                           "alerts": [a.to_dict() for a in alerts]})
    else:
        if not failing:
            output.stdout.print(f"{the_run.name}: healthy - none of {len(checked)} rules fired at {fail_on} or above "
                                f"({', '.join(checked)})", markup=False)
        for alert in alerts:
            print_alert(alert.to_dict(), prefix=f"{the_run.name}: ")
    if failing:
        raise typer.Exit(EXIT_ALERT)
