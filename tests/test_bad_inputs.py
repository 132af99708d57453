"""Bad inputs across the package, one table: each gives one clear error or a counted skip.

Every row of ``CLI_CASES`` runs the real CLI in-process (``run_cli``) on real run folders written
by ``RunLog`` (or broken on purpose) and asserts the README's promise: exit code 1, exactly one
``error: ...`` line on stderr naming the problem, no traceback. ``LIBRARY_CASES`` call the library
(metrics, RunLog, reader, importers, analysis, dashboard) and assert an ``EntropymonError`` whose
message names the argument. ``SKIP_CASES`` feed a running ``Monitor`` data it must skip and count
(``monitor_bad_rows``) with one warning, while training goes on. A few cases go through the real
console script too. The rest of the file checks the fixes that are not errors: ``-inf`` logits
give the entropy NumPy gives, a broken run does not hide the others, the help, the report's
permissions and default path, the status words, the sample runs of an installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from entropymon.cli.main import run_cli
from entropymon.errors import EntropymonError, InputError
from entropymon.hooks.failures import MonitorWarning
from entropymon.hooks.monitor import Monitor
from entropymon.log.reader import read_run
from entropymon.log.writer import RunLog

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real_curves"
VERL_METRICS = REAL / "verl_gsm8k_ppo_qwen05b" / "all_metrics.csv"
CONSOLE = shutil.which("entropymon")
# the bundled sample runs: two that collapse and one made with a remedy, on which no warning fires
SAMPLE_RUN_NAMES = ["grpo-adaptive-ent0.55", "grpo-temp1.0", "grpo-temp1.3"]


# -- fixtures: real runs, some broken on purpose ------------------------------------------------

def _write_law_run(logdir: Path, name: str, n: int = 40) -> Path:
    steps = np.arange(n)
    entropy = 0.45 + 0.35 * np.exp(-steps / 10)
    reward = 1.2 - 0.5 * np.exp(entropy) + np.random.default_rng(0).normal(0, 0.005, n)
    with RunLog(logdir, run=name) as log:
        for step, h, r in zip(steps, entropy, reward):
            log.log_step(int(step), {"entropy_mean": float(h), "reward_mean": float(r)})
    return logdir / name


def _broken_copy(good: Path, name: str, run_json: bytes) -> Path:
    copy = good.parent / name
    shutil.copytree(good, copy)
    (copy / "run.json").write_bytes(run_json)
    return copy


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    logdir = root / "logs"
    good = _write_law_run(logdir, "good")
    with RunLog(logdir, run="empty"):
        pass
    broken = root / "broken"
    broken.mkdir()
    files = root / "files"
    files.mkdir()
    (files / "deep.jsonl").write_text("[" * 100_000 + "\n")
    (files / "latin1.jsonl").write_bytes(b'{"step": 0, "data": {"x": "\xff"}}\n')
    (files / "big_step.csv").write_text("step,entropy,performance,performance_kind\n0,0.5,0.1,train_reward\n"
                                        "1e23,0.4,0.2,train_reward\n")
    (files / "negative_step.csv").write_text("step,entropy\n-1,0.5\n")
    (files / "unknown_columns.csv").write_text("step,foo,bar\n0,1,2\n1,2,3\n")
    trl = files / "trl-deep"
    trl.mkdir()
    (trl / "trainer_state.json").write_text("[" * 100_000)
    (files / "a_file.txt").write_text("not a folder")
    (files / "report-folder").mkdir()
    return {
        "logs": logdir, "good": good, "empty": logdir / "empty", "files": files,
        "not_utf8": _broken_copy(good, "not-utf8", b'{"schema_version":1,"x":"\xff"}'),
        "not_object": _broken_copy(good, "not-object", b"[1]\n"),
        "deep_meta": _broken_copy(good, "deep-meta", b"[" * 100_000),
        "broken": broken,
    }


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = run_cli([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# (id, argv built from the fixture's paths, fragments the error line must contain)
CLI_CASES = [
    ("run.json not UTF-8", lambda r: ["summary", r["not_utf8"]], ["run.json", "UTF-8"]),
    ("run.json not an object", lambda r: ["summary", r["not_object"]], ["run.json", "schema_version"]),
    ("run.json nested 100k deep", lambda r: ["summary", r["deep_meta"]], ["run.json", "nested too deeply"]),
    ("summary of a missing run", lambda r: ["summary", r["logs"] / "nope"], ["does not exist"]),
    ("summary of a logdir, not a run", lambda r: ["summary", r["logs"]], ["expected a run folder", "good"]),
    ("fit --warmup beyond the run", lambda r: ["fit", r["good"], "--warmup", "1000000"], ["--warmup", "40 steps", "1000000"]),
    ("fit --warmup negative", lambda r: ["fit", r["good"], "--warmup", "-1"], ["--warmup"]),
    ("fit --fraction 2", lambda r: ["fit", r["good"], "--fraction", "2"], ["--fraction", "(0, 1)"]),
    ("fit --bounds reversed", lambda r: ["fit", r["good"], "--bounds", "1,0"], ["--bounds", "LOW < HIGH"]),
    ("fit --smoothing word", lambda r: ["fit", r["good"], "--smoothing", "lots"], ["--smoothing"]),
    ("check window=0", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.window=0"],
     ["entropy_collapse.window", "integer >= 1", "got 0"]),
    ("check window=-5", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.window=-5"],
     ["entropy_collapse.window", "got -5"]),
    ("check window=0.5", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.window=0.5"],
     ["entropy_collapse.window", "integer", "got 0.5"]),
    ("check window=1e30", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.window=1e30"],
     ["entropy_collapse.window", "at most", "got 1e+30"]),
    ("check threshold=nan", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.threshold=nan"],
     ["entropy_collapse.threshold", "(0, 1)", "got nan"]),
    ("check start_points=0", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.start_points=0"],
     ["entropy_collapse.start_points", "got 0"]),
    ("check plateau=-1", lambda r: ["check", r["good"], "--threshold", "plateau=-1"],
     ["plateau.threshold", "got -1"]),
    ("check share above 1", lambda r: ["check", r["good"], "--threshold", "ess_low=1.5"], ["ess_low.threshold", "(0, 1]"]),
    ("check collapse=inf", lambda r: ["check", r["good"], "--threshold", "divergence.collapse=inf"],
     ["divergence.collapse", "got inf"]),
    ("check threshold syntax", lambda r: ["check", r["good"], "--threshold", "entropy_collapse"], ["--threshold", "RULE=VALUE"]),
    ("check unknown rule", lambda r: ["check", r["good"], "--threshold", "no_such_rule=1"], ["no_such_rule"]),
    ("check unknown parameter", lambda r: ["check", r["good"], "--threshold", "entropy_collapse.speed=1"], ["speed"]),
    ("check --fail-on word", lambda r: ["check", r["good"], "--fail-on", "loud"], ["--fail-on", "loud"]),
    ("check a run with no steps", lambda r: ["check", r["empty"]], ["no steps", "nothing to check"]),
    ("list a file", lambda r: ["list", r["files"] / "a_file.txt"], ["logdir", "a_file.txt"]),
    ("list --samples with LOGDIR", lambda r: ["list", "--samples", r["logs"]], ["LOGDIR", "--samples"]),
    ("import an unknown kind", lambda r: ["import", "wandb", r["files"] / "deep.jsonl", "-o", r["broken"] / "x"], ["KIND", "wandb"]),
    ("import verl missing file", lambda r: ["import", "verl", r["files"] / "none.jsonl", "-o", r["broken"] / "x"], ["no such file"]),
    ("import verl nested 100k deep", lambda r: ["import", "verl", r["files"] / "deep.jsonl", "-o", r["broken"] / "x"],
     ["deep.jsonl", "line 1", "nested too deeply"]),
    ("import verl not UTF-8", lambda r: ["import", "verl", r["files"] / "latin1.jsonl", "-o", r["broken"] / "x"], ["not a text file"]),
    ("import trl state nested deep", lambda r: ["import", "trl", r["files"] / "trl-deep", "-o", r["broken"] / "x"],
     ["trainer_state.json", "nested too deeply"]),
    ("import csv step 1e23", lambda r: ["import", "csv", r["files"] / "big_step.csv", "-o", r["broken"] / "x"],
     ["row 3", "2**63", "1e+23"]),
    ("import csv negative step", lambda r: ["import", "csv", r["files"] / "negative_step.csv", "-o", r["broken"] / "x"],
     ["row 2", "non-negative"]),
    ("import csv nothing known", lambda r: ["import", "csv", r["files"] / "unknown_columns.csv", "-o", r["broken"] / "x"],
     ["none of which is an entropy or a performance", "'foo'", "'bar'"]),
    ("import into an existing run", lambda r: ["import", "csv", REAL / "verl_gsm8k_ppo_qwen05b" / "curve.csv", "-o", r["good"]],
     ["already holds an entropymon run"]),
    ("report of a missing run", lambda r: ["report", r["logs"] / "nope", "-o", r["broken"] / "r.html"], ["does not exist"]),
    ("report onto a folder", lambda r: ["report", r["good"], "-o", r["files"] / "report-folder"], ["is a folder"]),
    ("dashboard --logdir FILE", lambda r: ["dashboard", "--logdir", r["files"] / "a_file.txt"], ["--logdir", "is a file"]),
    ("dashboard --logdir missing", lambda r: ["dashboard", "--logdir", r["files"] / "none"], ["--logdir", "does not exist"]),
    ("dashboard --port 0", lambda r: ["dashboard", "--port", "0"], ["--port"]),
]


@pytest.mark.parametrize("argv, fragments", [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES])
def test_cli_bad_input_is_one_error_line_and_exit_1(runs, capsys, argv, fragments):
    code, out, err = _cli(argv(runs), capsys)
    assert_one_line_error(code, out, err, *fragments)
    assert not any(runs["broken"].iterdir())  # nothing half-made is left behind


@pytest.mark.skipif(CONSOLE is None, reason="the console script is not on PATH")
@pytest.mark.parametrize("argv, fragments", [
    (lambda r: ["summary", r["not_utf8"]], ["UTF-8"]),
    (lambda r: ["check", r["good"], "--threshold", "entropy_collapse.window=1e30"], ["entropy_collapse.window"]),
    (lambda r: ["import", "verl", r["files"] / "deep.jsonl", "-o", r["broken"] / "x"], ["nested too deeply"]),
    (lambda r: ["dashboard", "--logdir", r["files"] / "a_file.txt"], ["is a file"]),
], ids=["not utf-8", "window 1e30", "deep jsonl", "dashboard file"])
def test_console_script_bad_input_is_one_error_line(runs, argv, fragments):
    result = subprocess.run([CONSOLE, *map(str, argv(runs))], capture_output=True, text=True, timeout=300)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, *fragments)


# -- the library: metrics, RunLog, reader, analysis, importers, dashboard ----------------------

def _cyclic_dict():
    config = {"lr": 1e-6}
    config["self"] = config
    return config


def _cyclic_list():
    items = [1]
    items.append({"back": items})
    return {"items": items}


def _diagnose(thresholds):
    from entropymon.analysis.alerts import diagnose

    frame = pd.DataFrame({"step": np.arange(10), "entropy_mean": np.linspace(1, 0.5, 10)})
    return diagnose(frame, thresholds=thresholds)


def _serve_on_busy_port(tmp_path):
    from entropymon_dashboard import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        serve(tmp_path, port=busy.getsockname()[1], background=True)


def _import_interrupted(tmp_path):
    """A progress callback that fails mid-way stands in for Ctrl+C during a long import."""
    from entropymon.importers import import_run

    def progress(done, total):
        if done == 30:
            raise KeyboardInterrupt

    try:
        import_run("csv", VERL_METRICS, tmp_path / "logs" / "verl", progress=progress)
    except KeyboardInterrupt:
        raise InputError("interrupted") from None


LIBRARY_CASES = [
    ("logits all -inf row", lambda t: __import__("entropymon").token_entropy(torch.full((2, 4), -float("inf"))),
     InputError, ["logits", "-inf in every slot"]),
    ("logits NaN", lambda t: __import__("entropymon").token_entropy(torch.tensor([[0.0, float("nan")]])),
     InputError, ["logits", "1 with NaN"]),
    ("logits +inf", lambda t: __import__("entropymon").token_entropy(torch.tensor([[0.0, float("inf")]])),
     InputError, ["logits", "1 with +inf"]),
    ("temperature 1e-300", lambda t: __import__("entropymon").token_entropy(torch.zeros(2, 5), temperature=1e-300),
     InputError, ["temperature", "overflows", "1e-300"]),
    ("temperature 1e-300 with log-probs", lambda t: __import__("entropymon").token_entropy_and_logprob(
        torch.zeros(2, 5, dtype=torch.bfloat16), torch.zeros(2, dtype=torch.long), temperature=1e-300),
     InputError, ["temperature", "overflows"]),
    ("RunLog config refers to itself", lambda t: RunLog(t, run="cycle", config=_cyclic_dict()),
     InputError, ["config", "reference cycle", "self"]),
    ("RunLog config list cycle", lambda t: RunLog(t, run="cycle", config=_cyclic_list()),
     InputError, ["config", "reference cycle"]),
    ("Monitor config refers to itself", lambda t: Monitor(t, run="cycle", config=_cyclic_dict()),
     InputError, ["config", "reference cycle"]),
    ("read_run of a file", lambda t: read_run(Path(__file__)), EntropymonError, ["is a file"]),
    ("diagnose window 1e30", lambda t: _diagnose({"entropy_collapse": {"window": 1e30}}),
     InputError, ["entropy_collapse.window"]),
    ("diagnose threshold True", lambda t: _diagnose({"divergence": True}), InputError, ["divergence"]),
    ("diagnose threshold string", lambda t: _diagnose({"ess_low": {"threshold": "0.5"}}), InputError, ["ess_low.threshold"]),
    ("import interrupted", _import_interrupted, InputError, ["interrupted"]),
    ("dashboard on a busy port", _serve_on_busy_port, InputError, ["port", "in use"]),
    ("dashboard poll 0 s", lambda t: __import__("entropymon_dashboard").create_app(t, poll_interval_s=0),
     InputError, ["poll_interval_s"]),
]


@pytest.mark.parametrize("call, error_type, fragments", [case[1:] for case in LIBRARY_CASES],
                         ids=[case[0] for case in LIBRARY_CASES])
def test_library_bad_input_raises_an_error_naming_it(tmp_path, call, error_type, fragments):
    with pytest.raises(error_type) as caught:
        call(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    # nothing half-made is left: no run folder, no import folder
    assert not list(tmp_path.rglob("run.json"))


# -- counted skips: a running Monitor meets data it must not use --------------------------------

def _logits_with_overflow():
    logits = torch.zeros(2, 3, 4)
    logits[0, 1, 0], logits[0, 1, 1] = 3.4e38, -3.4e38
    token_ids = torch.zeros(2, 3, dtype=torch.long)
    token_ids[0, 1] = 1  # the sampled token is 6.8e38 below the best: its log-prob overflows float32
    return {"logits": logits, "token_ids": token_ids}


def _logits_with_a_dead_row():
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    logits[1, 2, :] = -float("inf")
    return {"logits": logits}


SKIP_CASES = [
    ("log-probs > 0", lambda: {"logprobs": torch.full((2, 3), 801.0)}, 2, ["logprobs", "log-probs <= 0", "max 801"]),
    ("one positive log-prob", lambda: {"logprobs": torch.tensor([[-1.0, 0.5, -2.0], [-1.0, -1.0, -1.0]])}, 1,
     ["logprobs", "1 > 0"]),
    ("negative entropies", lambda: {"entropies": torch.tensor([[0.5, -5.0, 0.1], [0.2, 0.2, 0.2]])}, 1,
     ["entropies", "entropies >= 0", "min -5"]),
    ("NaN rewards", lambda: {"entropies": torch.ones(2, 3), "rewards": torch.tensor([1.0, float("nan")])}, 1,
     ["rewards", "1 NaN"]),
    ("logits row all -inf", _logits_with_a_dead_row, 1, ["entropies", "NaN"]),
    ("log-prob overflow", _logits_with_overflow, 1, ["logprobs", "-inf", "below float32's range"]),
]


@pytest.mark.parametrize("make, n_bad, fragments", [case[1:] for case in SKIP_CASES], ids=[case[0] for case in SKIP_CASES])
def test_monitor_skips_and_counts_impossible_values_with_one_warning(tmp_path, make, n_bad, fragments):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(tmp_path, run="skips") as monitor:
            monitor.observe(0, **{"rewards": torch.tensor([1.0, 0.0]), **make()})
            monitor.observe(1, entropies=torch.full((2, 3), 0.5), rewards=torch.tensor([1.0, 0.0]))
            monitor.flush()
            assert monitor.bad_rows == n_bad and monitor.errors == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(messages) == 1, messages
    for fragment in fragments:
        assert fragment in messages[0], (fragment, messages[0])
    steps = read_run(tmp_path / "skips").steps.set_index("step")
    assert steps.loc[1, "entropy_mean"] == pytest.approx(0.5)  # training went on, the next step is logged


def test_table_has_at_least_forty_bad_inputs():
    assert len(CLI_CASES) + len(LIBRARY_CASES) + len(SKIP_CASES) >= 40


# -- -inf logits are a distribution, not bad input ----------------------------------------------

def _numpy_entropy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Entropy of softmax(z / T) in float64, where a -inf slot has probability 0 and adds 0."""
    z = logits.astype(np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropy_with_minus_inf_slots_matches_numpy(dtype, temperature):
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(4, 6, 50, generator=generator, dtype=torch.float64) * 3).to(dtype)
    banned = torch.rand(4, 6, 50, generator=generator) < 0.4  # a masked vocabulary: 40% of the slots
    banned[..., 0] = False  # every row keeps a token
    logits = logits.masked_fill(banned, -float("inf"))
    token_ids = torch.zeros(4, 6, dtype=torch.long)
    from entropymon.metrics.entropy import nonfinite_rows, token_entropy, token_entropy_and_logprob

    entropy = token_entropy(logits, temperature=temperature)
    reference = _numpy_entropy(logits.double().numpy(), temperature)
    np.testing.assert_allclose(entropy.numpy(), reference, atol=3e-5, rtol=1e-5)
    entropy2, logprob = token_entropy_and_logprob(logits, token_ids, temperature=temperature, scratch_bytes=4096)
    np.testing.assert_allclose(entropy2.numpy(), reference, atol=3e-5, rtol=1e-5)
    z = logits.double().numpy() / temperature
    log_p0 = z[..., 0] - z.max(-1) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))
    np.testing.assert_allclose(logprob.numpy(), log_p0, atol=3e-5, rtol=1e-5)
    assert not nonfinite_rows(logits).any()


def test_logits_of_plus_minus_3e38_give_the_finite_entropy_numpy_gives():
    from entropymon.metrics.entropy import token_entropy

    logits = torch.tensor([[3.4e38, -3.4e38, 0.0], [3.4e38, 3.4e38, -3.4e38], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(token_entropy(logits).numpy(), _numpy_entropy(logits.double().numpy()), atol=1e-6)


def test_monitor_logs_entropy_when_some_vocabulary_slots_are_minus_inf(tmp_path):
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 9, generator=generator)
    logits[..., 5:] = -float("inf")  # banned tokens
    with Monitor(tmp_path, run="masked-vocab") as monitor:
        monitor.observe(0, logits=logits, token_ids=torch.zeros(3, 4, dtype=torch.long), rewards=torch.ones(3))
        monitor.flush()
        assert monitor.bad_rows == 0 and monitor.errors == 0
    logged = read_run(tmp_path / "masked-vocab").steps.iloc[0]
    assert logged["entropy_mean"] == pytest.approx(_numpy_entropy(logits.numpy()).mean(), rel=1e-5)


# -- what a newcomer meets ----------------------------------------------------------------------

def test_list_marks_a_broken_run_and_lists_the_others(runs, capsys):
    code, out, err = _cli(["list", runs["logs"].parent, "--json"], capsys)
    assert code == 0, err
    rows = {row["run"]: row for row in json.loads(out)}
    assert rows["logs/good"]["status"] == "finished" and rows["logs/good"]["steps"] == 40
    for name in ("logs/not-utf8", "logs/not-object", "logs/deep-meta"):
        assert rows[name]["status"] == "broken" and "run.json" in rows[name]["error"]
    code, out, _ = _cli(["list", runs["logs"]], capsys)
    assert code == 0 and "not-object: broken:" in out


def test_list_shows_a_start_time_that_is_not_a_string(tmp_path, capsys):
    run = _write_law_run(tmp_path, "odd-start", n=3)
    meta = json.loads((run / "run.json").read_text())
    meta["started_at"] = 12
    (run / "run.json").write_text(json.dumps(meta))
    code, out, err = _cli(["list", tmp_path], capsys)
    assert code == 0 and "odd-start" in out and "12" in out, err


def test_status_words_are_the_same_in_list_and_dashboard(tmp_path, capsys):
    from entropymon.display import STATUS_WORDS
    from entropymon_dashboard.catalog import RunCatalog
    from entropymon_dashboard.runs_table import run_status
    from entropymon_dashboard.store import RunStore

    _write_law_run(tmp_path, "closed-run", n=3)
    dead = _write_law_run(tmp_path, "dead-writer", n=3)
    meta = json.loads((dead / "run.json").read_text())
    meta["status"] = "running"  # a writer that died without closing
    (dead / "run.json").write_text(json.dumps(meta))
    old = 1_000_000_000
    for path in dead.iterdir():
        os.utime(path, (old, old))
    _, out, _ = _cli(["list", tmp_path, "--json"], capsys)
    listed = {row["run"]: row["status"] for row in json.loads(out)}
    store = RunStore(RunCatalog(tmp_path))
    shown = {store.state(entry.run_id).name: run_status(store.state(entry.run_id)) for entry in store.catalog.entries()}
    assert listed == {"closed-run": "finished", "dead-writer": "stopped (no writer)"}
    assert set(listed.values()) <= set(STATUS_WORDS)
    assert shown == listed


def test_help_shows_flags_without_a_value_and_check_lists_every_rule(capsys):
    from entropymon.analysis.alerts import RULES

    assert run_cli(["--help"]) == 0
    root_help = capsys.readouterr().out
    assert run_cli(["check", "--help"]) == 0
    check_help = capsys.readouterr().out
    for text in (root_help, check_help):
        assert "<bool>" not in text and "--help" in text and "-h" in text
    for name in RULES:
        assert name in check_help
    assert run_cli(["check", "-h"]) == 0 and "--threshold" in capsys.readouterr().out


def test_fit_folds_the_signs_of_the_law_into_the_formula(runs, capsys):
    from entropymon.display import law_formula  # the one formatter: the CLI, the dashboard and the report

    assert law_formula(-0.00692, -0.0711) == "R = 0.00692·e^H - 0.0711"
    assert law_formula(0.5, 1.2) == "R = -0.5·e^H + 1.2"
    code, out, err = _cli(["fit", runs["good"], "--entropy", "step", "--bootstrap", "50"], capsys)
    assert code == 0, err
    law_line = next(line for line in out.splitlines() if line.startswith("law: "))
    assert "--" not in law_line and "+ -" not in law_line


def test_fit_and_summary_say_which_performance_series_they_used_and_why(tmp_path, capsys):
    code, _, err = _cli(["import", "csv", VERL_METRICS, "-o", tmp_path / "verl"], capsys)
    assert code == 0, err
    run = read_run(tmp_path / "verl")
    mapping = run.meta["config"]["name_mapping"]
    assert mapping["actor/entropy_loss"] == "entropy_mean" and mapping["critic/score/mean"] == "reward_mean"
    assert mapping["val/test_score/openai/gsm8k"] == "eval_accuracy"
    metrics = pd.read_csv(VERL_METRICS)
    np.testing.assert_allclose(run.step_metrics["reward_mean"], metrics["critic/score/mean"])
    n_eval = int(metrics["val/test_score/openai/gsm8k"].notna().sum())
    code, out, err = _cli(["summary", tmp_path / "verl", "--json"], capsys)
    summary = json.loads(out)[0]
    assert summary["performance_column"] == "eval_accuracy"
    assert f"eval_accuracy ({n_eval} values)" in summary["performance_reason"]
    assert f"reward_mean ({len(metrics)} values)" in summary["performance_reason"]
    code, out, err = _cli(["fit", tmp_path / "verl", "--performance", "reward_mean", "--bootstrap", "50"], capsys)
    assert code == 0 and "performance series: reward_mean as asked (61 values)" in out, err


def test_a_failed_import_removes_its_half_made_run_so_a_retry_works(tmp_path):
    from entropymon.importers import import_run

    target = tmp_path / "logs" / "verl"
    with pytest.raises(InputError):
        _import_interrupted(tmp_path)
    assert not target.exists()
    target.mkdir(parents=True)  # an existing empty folder is kept, only the run's files go
    with pytest.raises(KeyboardInterrupt):
        import_run("csv", VERL_METRICS, target, progress=lambda done, total: (_ for _ in ()).throw(KeyboardInterrupt)
                   if done == 5 else None)
    assert target.is_dir() and not any(target.iterdir())
    assert import_run("csv", VERL_METRICS, target) == target
    assert read_run(target).steps["step"].nunique() == 61


def test_report_follows_the_umask_and_defaults_into_the_run_folder(tmp_path, capsys):
    run = _write_law_run(tmp_path, "reported", n=30)
    previous = os.umask(0o022)
    try:
        code, out, err = _cli(["report", run], capsys)
    finally:
        os.umask(previous)
    assert code == 0, err
    report = run / "report.html"
    assert report.is_file() and str(report) in out
    assert stat.S_IMODE(report.stat().st_mode) == 0o644
    assert read_run(run).steps["step"].nunique() == 30  # the run is still read the same
    assert "report.html" in (ROOT / ".gitignore").read_text().split()


def test_dashboard_busy_port_names_the_option(runs, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = _cli(["dashboard", "--logdir", runs["logs"], "--port", port], capsys)
    assert_one_line_error(code, out, err, f"--port {port}", "in use", "--port N")


def test_demo_says_how_to_reach_the_dashboard_on_a_busy_port_and_after_training(tmp_path):
    from entropymon.demo.run import _keep_serving, _start_dashboard

    lines = []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert _start_dashboard(tmp_path, "127.0.0.1", busy.getsockname()[1], lines.append) is None
    assert "--port" in lines[-1] and "--no-dashboard" in lines[-1] and "in use" in lines[-1]
    server = _start_dashboard(tmp_path, "127.0.0.1", 0, lines.append)
    assert server is not None and "--no-dashboard" in lines[-1]
    _keep_serving(server, False, lines.append, tmp_path)
    assert lines[-1] == (f"dashboard stopped ({server.url} no longer answers); reopen it with: "
                         f"entropymon dashboard --logdir {tmp_path}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(CONSOLE is None, reason="the console script is not on PATH")
@pytest.mark.parametrize("verbose", [False, True])
def test_dashboard_logs_requests_only_with_verbose(runs, verbose):
    import time
    import urllib.request

    port = _free_port()
    command = [CONSOLE, "dashboard", "--logdir", str(runs["logs"]), "--port", str(port)] + (["--verbose"] if verbose else [])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                for _ in range(3):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() else ""
                time.sleep(0.3)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert ("GET / HTTP" in err) == verbose, err


def test_missing_extras_are_named(tmp_path):
    block = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"torch", "plotly", "dash"}:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name.split(".")[0])
        sys.meta_path.insert(0, Block())
    """)
    code = block + textwrap.dedent(f"""
        try:
            from entropymon import Monitor
        except ModuleNotFoundError as error:
            print("monitor:", error)
        from entropymon.cli.main import run_cli
        print("report-missing:", run_cli(["report", {str(tmp_path / "nope")!r}]))
        print("report:", run_cli(["report", {str(ROOT / "sample_logs" / "grpo-temp1.0")!r}, "-o", {str(tmp_path / "r.html")!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "monitor: entropymon.Monitor needs torch" in result.stdout and "entropymon[torch]" in result.stdout
    assert "report-missing: 1" in result.stdout and "report: 1" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "does not exist" in errors[0]  # a missing run is named before the missing extra
    assert "entropymon[dashboard]" in errors[1] and "Traceback" not in result.stderr


def test_sample_runs_are_found_by_import_and_by_list_in_the_editable_install(capsys):
    import entropymon.sample_logs as samples

    folder = samples.folder()
    assert sorted(p.parent.name for p in folder.glob("*/run.json")) == SAMPLE_RUN_NAMES
    code, out, err = _cli(["list", "--samples", "--json"], capsys)
    assert code == 0, err
    assert {Path(row["path"]).parent for row in json.loads(out)} == {folder}


@pytest.mark.slow
def test_sample_runs_are_found_from_an_installed_wheel(tmp_path):
    """Build the wheel, install it into a bare folder and ask the CLI there for the sample runs."""
    import importlib.util

    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        pytest.skip(f"setuptools {setuptools.__version__} cannot build a wheel without the wheel package")
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheel_dir), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheel_dir.glob("entropymon-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "entropymon/sample_logs/__init__.py" in names
    assert all(f"entropymon/sample_logs/{name}/run.json" in names for name in SAMPLE_RUN_NAMES)
    zipfile.ZipFile(wheel).extractall(target)
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                            and "editable" not in getattr(f, "__name__", "").lower()]
        import entropymon, entropymon.sample_logs
        assert entropymon.__file__.startswith({str(target)!r}), entropymon.__file__
        from entropymon.cli.main import run_cli
        sys.exit(run_cli(["list", "--samples", "--json"]))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    assert sorted(row["run"] for row in rows) == SAMPLE_RUN_NAMES
    assert all(row["path"].startswith(str(target / "entropymon" / "sample_logs")) for row in rows)
