"""The ``entropymon`` command on real runs written by ``RunLog``: in this process through
``run_cli`` (the function the console script calls), and through the real console script where
that proves something more (version and help, usage errors and tracebacks of a real process, the
blocking dashboard server, the demo).

Numbers the CLI prints are checked against independent computations (NumPy least squares for the
law, the values the test wrote for start/end figures); user errors must give one ``error:`` line,
exit code 1 and no traceback.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropymon.cli.main import run_cli
from entropymon.log.reader import read_run
from entropymon.log.writer import RunLog

SHARED = Path(__file__).resolve().parent / "data"  # real_curves/ copied from public logs
REAL_CURVES = sorted((SHARED / "real_curves").glob("*/curve.csv"))
VERL_RUN = "verl_gsm8k_ppo_qwen05b"
DIVERGING_RUN = "trl_grpo_qwen25_7b_gsm8k_s43_collapse"
COMMAND = [shutil.which("entropymon")] if shutil.which("entropymon") else [sys.executable, "-m", "entropymon.cli.main"]


def console_script(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The installed ``entropymon`` script in a child process (``env``: extra variables)."""
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        timeout=timeout,
    )


@contextmanager
def _working_directory(path):
    previous = os.getcwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def entropymon(*args, cwd=None) -> subprocess.CompletedProcess:
    """``run_cli(args)`` in this process, reported like a finished child process (exit code,
    stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with _working_directory(cwd), redirect_stdout(out), redirect_stderr(err):
        code = run_cli([str(a) for a in args])
    return subprocess.CompletedProcess(["entropymon", *map(str, args)], code, out.getvalue(), err.getvalue())


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 1, exactly one ``error: ...`` line on stderr mentioning ``fragments``, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def law_steps(n: int, a: float, b: float, h_start: float, h_end: float, noise: float, seed: int) -> pd.DataFrame:
    """Steps whose reward follows R = -a*e^H + b (plus noise) while entropy decays from h_start to h_end."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    entropy = h_end + (h_start - h_end) * np.exp(-steps / (n / 4))
    return pd.DataFrame({
        "step": steps, "entropy_mean": entropy, "reward_mean": b - a * np.exp(entropy) + rng.normal(0, noise, n),
        "cov_logp_adv": rng.normal(0, 0.01, n),  # sign changes: no run of positive covariance
        "zero_std_group_frac": np.full(n, 0.2),
        "pass_at_1": np.linspace(0.2, 0.5, n), "pass_at_8": np.linspace(0.6, 0.8, n),
    })


def write_run(logdir: Path, name: str, frame: pd.DataFrame, flushes: int = 1) -> Path:
    """Write ``frame`` through the real writer, flushing ``flushes`` times (one chunk file each)."""
    with RunLog(logdir, run=name, config={"made_by": "test_cli"}) as log:
        for rows in np.array_split(np.arange(len(frame)), flushes):
            for row in frame.iloc[rows].to_dict("records"):
                log.log_step(int(row.pop("step")), row)
            assert log.flush()
    return logdir / name


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_run(root, "healthy", law_steps(60, a=0.5, b=1.2, h_start=0.8, h_end=0.45, noise=0.005, seed=0), flushes=3)
    write_run(root, "collapsing", law_steps(60, a=0.5, b=1.2, h_start=1.0, h_end=0.02, noise=0.005, seed=1))
    rng = np.random.default_rng(2)
    write_run(root, "noise", pd.DataFrame({"step": np.arange(50), "entropy_mean": 0.5 + rng.normal(0, 0.05, 50),
                                           "reward_mean": rng.uniform(0, 1, 50)}))
    return root


# -- basics ------------------------------------------------------------------------------------

def test_version_prints_the_package_version():
    from entropymon import __version__

    result = console_script("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"entropymon {__version__}"


def test_help_lists_every_subcommand():
    from entropymon.cli.main import COMMANDS

    result = console_script("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_help_imports_neither_torch_nor_the_analysis_stack():
    probe = ("import sys; from entropymon.cli.main import run_cli; code = run_cli(['--help']); "
             "heavy = [m for m in ('torch', 'transformers', 'pandas', 'scipy', 'plotly', 'pyarrow') if m in sys.modules]; "
             "print('HEAVY', heavy, code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "HEAVY [] 0", result.stdout + result.stderr


# -- summary and fit ---------------------------------------------------------------------------

def test_summary_json_reports_start_end_ceiling_skill_baselines_and_verdict(logdir):
    result = entropymon("summary", logdir / "healthy", logdir / "noise", "--json")
    assert result.returncode == 0, result.stderr
    healthy, noise = json.loads(result.stdout)
    written = read_run(logdir / "healthy").steps.sort_values("step")
    assert healthy["run"] == "healthy" and healthy["steps"] == 60
    assert healthy["entropy_start"] == written["entropy_mean"].iloc[0]
    assert healthy["entropy_end"] == written["entropy_mean"].iloc[-1]
    assert healthy["performance_column"] == "reward_mean"
    assert healthy["performance_end"] == written["reward_mean"].iloc[-1]
    backtest = healthy["forecast"]["backtest"]
    assert set(backtest["recent_baseline_rmse"]) == {"last_value", "window_mean", "linear_trend"}
    assert healthy["skill"] == pytest.approx(1 - backtest["recent_law_rmse"] / min(backtest["recent_baseline_rmse"].values()))
    assert healthy["trustworthy"] is True
    lo, hi = healthy["ceiling_ci"]
    assert lo <= 1.2 - 0.5 <= hi  # the true ceiling b - a lies in the reported interval
    assert noise["trustworthy"] is False


def test_summary_table_says_in_words_whether_to_trust_the_ceiling(logdir):
    result = entropymon("summary", logdir / "healthy", logdir / "noise")
    assert result.returncode == 0, result.stderr
    assert "healthy: trust this ceiling" in result.stdout
    assert "noise: do not trust this ceiling" in result.stdout
    assert "baselines: last value" in result.stdout


def test_fit_json_matches_numpy_least_squares_on_every_point(logdir):
    result = entropymon("fit", logdir / "healthy", "--warmup", "none", "--json", "--bootstrap", "200")
    assert result.returncode == 0, result.stderr
    fit = json.loads(result.stdout)["fit"]
    steps = read_run(logdir / "healthy").steps.sort_values("step")
    design = np.column_stack([np.exp(steps["entropy_mean"]), np.ones(len(steps))])  # (n, 2)
    (minus_a, b), *_ = np.linalg.lstsq(design, steps["reward_mean"].to_numpy(), rcond=None)
    residual = steps["reward_mean"].to_numpy() - design @ [minus_a, b]
    r2 = 1 - residual @ residual / np.sum((steps["reward_mean"] - steps["reward_mean"].mean()) ** 2)
    assert fit["a"] == pytest.approx(-minus_a, rel=1e-9)
    assert fit["b"] == pytest.approx(b, rel=1e-9)
    assert fit["ceiling"] == pytest.approx(b + minus_a, rel=1e-9)
    assert fit["r2"] == pytest.approx(r2, rel=1e-9)
    assert fit["n"] == 60 and fit["warmup_excluded"] == 0


def test_fit_json_includes_skill_baselines_and_the_early_prediction(logdir):
    result = entropymon("fit", logdir / "healthy", "--fraction", "0.3", "--json", "--bootstrap", "200")
    out = json.loads(result.stdout)
    assert {"skill", "trustworthy", "reason", "backtest", "early_prediction"} <= set(out)
    early = out["early_prediction"]
    assert early["fraction"] == 0.3
    assert set(early["baseline_rmse"]) == {"last_value", "window_mean", "linear_trend"}
    assert early["skill"] == pytest.approx(1 - early["law_rmse"] / min(early["baseline_rmse"].values()))


def test_fit_says_plainly_that_the_law_does_not_predict_a_noise_run(logdir):
    result = entropymon("fit", logdir / "noise", "--bootstrap", "200")
    assert result.returncode == 0, result.stderr
    verdict = [line for line in result.stdout.splitlines() if line.startswith("verdict:")]
    assert verdict and verdict[0].startswith("verdict: do not trust this ceiling")


# -- check -------------------------------------------------------------------------------------

def test_check_exits_0_on_a_healthy_run(logdir):
    result = entropymon("check", logdir / "healthy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy - none of" in result.stdout


def test_check_exits_3_and_names_the_rule_when_entropy_collapses(logdir):
    result = entropymon("check", logdir / "collapsing", "--rules", "entropy_collapse", "--json")
    assert result.returncode == 3, result.stderr
    out = json.loads(result.stdout)
    assert [a["rule"] for a in out["alerts"]] == ["entropy_collapse"] and out["healthy"] is False
    steps = read_run(logdir / "collapsing").steps.sort_values("step")
    start = steps["entropy_mean"].iloc[:3].mean()
    smoothed = steps["entropy_mean"].rolling(3, min_periods=1).mean().to_numpy()
    first_below = steps["step"].to_numpy()[np.argmax(smoothed < 0.3 * start)]
    assert out["alerts"][0]["step"] == first_below


def test_check_json_gives_each_alert_its_steps_evidence_and_remedies(logdir):
    result = entropymon("check", logdir / "collapsing", "--json")
    assert result.returncode == 3, result.stderr
    out = json.loads(result.stdout)
    assert out["healthy"] is False and out["health"] in ("warning", "critical")
    for alert in out["alerts"]:
        assert {"rule", "severity", "step", "first_visible_step", "message", "evidence", "remedies"} <= set(alert)
        assert alert["first_visible_step"] >= alert["step"] and alert["evidence"]["text"]
        if alert["severity"] != "info":
            assert alert["remedies"] and all(r["trl"] or r["verl"] for r in alert["remedies"])
    text = entropymon("check", logdir / "collapsing").stdout
    assert "try: raise the upper clip bound" in text and "epsilon_high=0.28" in text


def test_check_summary_and_the_library_give_the_same_alerts(logdir):
    from entropymon.analysis import diagnose

    checked = json.loads(entropymon("check", logdir / "collapsing", "--json").stdout)["alerts"]
    summarised = json.loads(entropymon("summary", logdir / "collapsing", "--json").stdout)[0]["alerts"]
    library = [a.to_dict() for a in diagnose(read_run(logdir / "collapsing"))]
    assert checked == summarised == json.loads(json.dumps(library))


def test_check_threshold_override_changes_when_a_rule_fires(logdir):
    assert entropymon("check", logdir / "collapsing", "--rules", "entropy_collapse",
                      "--threshold", "entropy_collapse=0.01").returncode == 0


def test_check_with_an_unknown_rule_is_a_one_line_user_error(logdir):
    assert_user_error(entropymon("check", logdir / "healthy", "--rules", "entropy_collapse,no_such_rule"),
                      "no_such_rule")


def test_check_with_a_malformed_threshold_is_a_one_line_user_error(logdir):
    assert_user_error(entropymon("check", logdir / "healthy", "--threshold", "entropy_collapse"), "--threshold")


# -- errors ------------------------------------------------------------------------------------

def test_missing_run_path_is_a_one_line_user_error(tmp_path):
    assert_user_error(console_script("summary", tmp_path / "nowhere"), "nowhere")


def test_corrupt_run_json_is_a_one_line_user_error(tmp_path):
    frame = law_steps(10, 0.5, 1.2, 0.8, 0.5, 0.01, 0)
    run = write_run(tmp_path, "broken", frame)
    (run / "run.json").write_text('{"schema_version": 1, "run": ')
    for command in ("summary", "fit", "check"):
        assert_user_error(entropymon(command, run), "run.json")


def test_a_folder_of_runs_given_as_run_says_which_runs_it_holds(logdir):
    assert_user_error(entropymon("fit", logdir), "healthy")


def test_bad_option_values_are_one_line_user_errors(logdir):
    assert_user_error(console_script("fit", logdir / "healthy", "--fraction", "1.5"), "--fraction")
    assert_user_error(console_script("fit", logdir / "healthy", "--smoothing", "fast"), "--smoothing")
    assert_user_error(console_script("fit", logdir / "healthy", "--fraction", "abc"), "--fraction")
    assert_user_error(console_script("fit"), "Missing argument")
    assert_user_error(console_script("no-such-command"), "no-such-command")


def test_an_analysis_the_data_cannot_support_is_a_one_line_user_error(tmp_path):
    run = write_run(tmp_path, "entropy-only", pd.DataFrame({"step": range(10), "entropy_mean": np.linspace(1, 0.5, 10)}))
    assert_user_error(entropymon("fit", run), "performance")


# -- list, compact, report, dashboard ----------------------------------------------------------

def test_list_shows_each_run_with_steps_and_live_status(tmp_path):
    write_run(tmp_path, "done", law_steps(12, 0.5, 1.2, 0.8, 0.5, 0.01, 0))
    with RunLog(tmp_path, run="running") as log:
        for step in range(5):
            log.log_step(step, {"entropy_mean": 1.0 - 0.1 * step})
        assert log.flush()
        rows = {row["run"]: row for row in json.loads(entropymon("list", tmp_path, "--json").stdout)}
    assert rows["done"]["status"] == "finished" and rows["done"]["steps"] == 12 and rows["done"]["last_step"] == 11
    assert rows["running"]["status"] == "live" and rows["running"]["steps"] == 5
    table = entropymon("list", tmp_path)
    assert table.returncode == 0 and "done" in table.stdout and "finished" in table.stdout


def test_compact_merges_chunks_without_losing_or_duplicating_rows(tmp_path):
    frame = law_steps(30, 0.5, 1.2, 0.8, 0.5, 0.01, 0)
    run = write_run(tmp_path, "chunky", frame, flushes=5)
    before = read_run(run).steps.sort_values("step").reset_index(drop=True)
    assert len(list((run / "steps").glob("*.parquet"))) == 5
    result = entropymon("compact", run)
    assert result.returncode == 0, result.stderr
    assert "merged 5 chunk files into 1" in result.stdout
    assert len(list((run / "steps").glob("*.parquet"))) == 1
    after = read_run(run).steps.sort_values("step").reset_index(drop=True)
    pd.testing.assert_frame_equal(after[before.columns], before)


def test_report_writes_one_offline_html_file_for_several_runs(logdir, tmp_path):
    out = tmp_path / "report.html"
    result = entropymon("report", logdir / "healthy", logdir / "collapsing", "-o", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert "healthy" in text and "collapsing" in text
    assert text.count("plotly.js v") == 1
    assert "<script src=\"http" not in text and "<script src='http" not in text


def test_dashboard_on_a_missing_logdir_is_a_one_line_user_error(tmp_path):
    assert_user_error(entropymon("dashboard", "--logdir", tmp_path / "none"), "none")


def test_dashboard_serves_the_logdir_until_stopped(logdir):
    pytest.importorskip("entropymon_dashboard")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([*COMMAND, "dashboard", "--logdir", str(logdir), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, status = time.monotonic() + 60, None
        while status is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    status = response.status
            except OSError:
                time.sleep(0.3)
        assert status == 200, process.stderr.read() if process.poll() is not None else "no answer in 60 s"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_dashboard_default_logdir_is_local_runs_when_present(tmp_path):
    from entropymon.cli.serve import default_logdir

    (tmp_path / "runs").mkdir()
    assert default_logdir(tmp_path) == tmp_path / "runs"


# -- import, then analyse the public curves ---------------------------------------------------

def test_import_of_an_unknown_kind_or_a_garbage_file_is_a_one_line_user_error(tmp_path):
    garbage = tmp_path / "events.out.tfevents.9.x"
    garbage.write_bytes(b"\x00garbage" * 10)
    assert_user_error(entropymon("import", "wandb", garbage, "--out", tmp_path / "l" / "r"), "wandb")
    assert_user_error(entropymon("import", "tensorboard", garbage, "--out", tmp_path / "l" / "r"), garbage.name)


@pytest.fixture(scope="module")
def real_logdir(tmp_path_factory) -> Path:
    assert len(REAL_CURVES) == 6, f"expected the 6 public curves under {SHARED / 'real_curves'}"
    root = tmp_path_factory.mktemp("real")
    for curve in REAL_CURVES:
        result = entropymon("import", "csv", curve, "--out", root / curve.parent.name)
        assert result.returncode == 0, result.stderr
        assert f"imported {len(pd.read_csv(curve))} steps" in result.stdout
    return root


def test_every_public_curve_summarises_with_skill_and_baselines(real_logdir):
    result = entropymon("summary", *(real_logdir / c.parent.name for c in REAL_CURVES), "--json")
    assert result.returncode == 0, result.stderr
    summaries = {item["run"]: item for item in json.loads(result.stdout)}
    assert set(summaries) == {c.parent.name for c in REAL_CURVES}
    for item in summaries.values():
        assert "skill" in item and "trustworthy" in item and item["reason"]
        if item["forecast"].get("backtest", {}).get("n_origins"):
            assert set(item["forecast"]["backtest"]["baseline_rmse"]) == {"last_value", "window_mean", "linear_trend"}
    assert summaries[DIVERGING_RUN]["trustworthy"] is False
    critical = [a for a in summaries[DIVERGING_RUN]["alerts"] if a["severity"] == "critical"]
    assert [a["rule"] for a in critical] == ["divergence"] and summaries[DIVERGING_RUN]["health"] == "critical"
    assert "reward_mean collapsed" in critical[0]["message"] and "surged" in critical[0]["message"]


def test_verl_public_run_in_sample_r2_is_095(real_logdir):
    result = entropymon("fit", real_logdir / VERL_RUN, "--warmup", "none", "--json", "--bootstrap", "200")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    curve = pd.read_csv(SHARED / "real_curves" / VERL_RUN / "curve.csv")
    design = np.column_stack([np.exp(curve["entropy"]), np.ones(len(curve))])
    coef, *_ = np.linalg.lstsq(design, curve["performance"].to_numpy(), rcond=None)
    residual = curve["performance"].to_numpy() - design @ coef
    r2 = 1 - residual @ residual / np.sum((curve["performance"] - curve["performance"].mean()) ** 2)
    assert out["fit"]["r2"] == pytest.approx(r2, rel=1e-9)
    assert abs(out["fit"]["r2"] - 0.95) <= 0.01
    assert {"skill", "backtest", "early_prediction"} <= set(out)


def test_diverging_public_run_is_not_given_a_trustworthy_ceiling(real_logdir):
    result = entropymon("fit", real_logdir / DIVERGING_RUN)
    assert result.returncode == 0, result.stderr
    assert "verdict: do not trust this ceiling" in result.stdout
    assert "left the law's regime" in result.stdout


def test_dashboard_default_logdir_falls_back_to_the_bundled_sample_runs(tmp_path):
    from entropymon.cli.serve import default_logdir, sample_logs_dir
    from entropymon.errors import RunNotFoundError

    bundled = sample_logs_dir()
    if bundled is None:
        with pytest.raises(RunNotFoundError, match="no bundled sample_logs"):
            default_logdir(tmp_path)
    else:
        assert default_logdir(tmp_path) == bundled and any(bundled.rglob("run.json"))


def test_demo_with_zero_steps_is_a_one_line_user_error(tmp_path):
    assert_user_error(console_script("demo", "--steps", "0", "--no-dashboard", "--logdir", tmp_path), "--steps")


@pytest.mark.slow
def test_demo_through_the_console_script_trains_and_writes_a_run_the_cli_can_read(tmp_path):
    """The README's first command, shortened: a real warm start and real GRPO steps, then `summary` reads it."""
    pytest.importorskip("trl")
    logdir = tmp_path / "runs"
    # One OpenMP thread: on an oversubscribed host each of torch's parallel regions waits a
    # scheduler slice for its descheduled second thread, and the warm start took 270 s, not 20 s.
    result = console_script(
        "demo", "--steps", "4", "--no-dashboard", "--logdir", logdir, "--run", "smoke",
        env={"OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 4/4" in result.stdout and "entropymon summary" in result.stdout
    # every chunk file: on a loaded machine the writer flushes more than once in 4 steps
    steps = pd.concat([pd.read_parquet(p) for p in sorted((logdir / "smoke" / "steps").glob("*.parquet"))])
    assert sorted(steps.loc[steps["entropy_mean"].notna(), "step"]) == [1, 2, 3, 4]
    assert ((steps["entropy_mean"] - steps["trl/entropy"]).abs().dropna() < 1e-3).all()
    listed = console_script("list", logdir, "--json")
    assert listed.returncode == 0 and "smoke" in listed.stdout
