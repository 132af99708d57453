"""Crash safety of RunLog with real processes: SIGKILL at random moments, SIGTERM, interpreter exit."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import log_child  # tests/ is on sys.path under pytest's default import mode
from conftest import blocked_signals
from entropymon.log.reader import read_run
from entropymon.log.schema import ChunkName

CHILD = Path(__file__).with_name("log_child.py")
ROOT = CHILD.parent.parent
KILL_TRIALS = 20
STEPS_PER_TRIAL_RANGE = 100_000  # trial t logs steps from t * this, so trials never overlap


def start_child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def segment_number(path: Path) -> int:
    return int(path.name.split("seg-")[1].split(".")[0])


def assert_rows_match_child(run, steps: set[int]) -> None:
    """The run holds exactly the child's values for ``steps`` (independently recomputed)."""
    frame = run.steps.set_index("step")
    for step in steps:
        expected = log_child.step_metrics(step)
        assert frame.loc[step, "entropy_mean"] == expected["entropy_mean"]
        assert frame.loc[step, "reward_mean"] == expected["reward_mean"]
    samples = run.samples[run.samples["step"].isin(steps)]
    assert len(samples) == log_child.SAMPLES_PER_STEP * len(steps)
    np.testing.assert_array_equal(samples["reward"].to_numpy(), samples["step"].to_numpy() * 0.5)
    tokens = run.tokens[run.tokens["step"].isin(steps)]
    assert len(tokens) == log_child.TOKENS_PER_STEP * len(steps)


class ConcurrentReader(threading.Thread):
    """Reads the run over and over while children write, merge and die; records what it saw."""

    def __init__(self, run_path: Path):
        super().__init__(daemon=True)
        self.run_path = run_path
        self.stop = threading.Event()
        self.polls = 0
        self.problems: list[str] = []

    def run(self) -> None:
        seen: set[int] = set()
        live = None  # one Run refreshed each poll (reads only new rows), next to a fresh read_run
        while not self.stop.is_set():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    run = read_run(self.run_path) if live is None or self.polls % 2 == 0 else live.refresh()
                    live = live or run
                    steps = run.steps
                    samples = run.samples
            except Exception as error:  # noqa: BLE001 - every error is a failure of the test
                if self.polls:  # (before the first child made the run, there is nothing to read)
                    self.problems.append(f"{type(error).__name__}: {error}")
                time.sleep(0.02)
                continue
            now = set(steps["step"])
            if steps.duplicated(["rank", "step"]).any() or samples.duplicated(["step", "sample_id"]).any():
                self.problems.append("a duplicated row")
            if not now >= seen:
                self.problems.append(f"steps went backwards: {sorted(seen - now)[:5]} vanished")
            seen = now
            self.polls += 1
            time.sleep(0.02)  # leave the children most of the CPU


def test_sigkill_at_random_moments_loses_no_flushed_step_and_duplicates_none(tmp_path):
    rng = random.Random(1234)
    reported: set[int] = set()
    started = time.monotonic()
    reader = ConcurrentReader(tmp_path / "killed")
    reader.start()
    for trial in range(KILL_TRIALS):
        # fanout 2: the writer merges after nearly every flush, so many kills land mid-merge
        child = start_child("write", str(tmp_path), "killed", str(trial * STEPS_PER_TRIAL_RANGE), "0", "0", "2")
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        reported.update(int(line) for line in out.split())
    reader.stop.set()
    reader.join(30)
    assert time.monotonic() - started < 300  # a sanity bound only: CI machines are often busy
    assert len(reported) > KILL_TRIALS  # the children did flush before dying
    assert reader.problems == [] and reader.polls > KILL_TRIALS
    assert any(ChunkName.parse(p.name).merged for p in read_run(tmp_path / "killed").files)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a partial or corrupt file would be warned about
        run = read_run(tmp_path / "killed")
        steps = run.steps
        samples = run.samples
    assert not steps.duplicated(["rank", "step"]).any()
    assert not samples.duplicated(["step", "sample_id"]).any()
    assert reported <= set(steps["step"])
    assert_rows_match_child(run, reported)
    # each child wrote a new segment; only the last child's temporary may remain (the next
    # writer start would clean it): earlier ones were cleaned when the next child started
    leftovers = [p for table in ("steps", "samples", "tokens") for p in (run.path / table).glob(".*.tmp")]
    newest = max(segment_number(p) for p in [*run.files, *leftovers])
    assert newest <= KILL_TRIALS - 1
    assert all(segment_number(p) == newest for p in leftovers), leftovers


def test_sigterm_flushes_then_calls_the_previous_handler(tmp_path):
    child = start_child("sigterm-chained", str(tmp_path), "term")
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert f"previous handler called with {int(signal.SIGTERM)}" in out, err
    assert child.returncode == 3  # the previous handler's sys.exit(3)
    run = read_run(tmp_path / "term")
    expected = set(range(log_child.STEPS_BEFORE_SIGNAL))
    assert set(run.steps["step"]) == expected
    assert_rows_match_child(run, expected)


def test_sigterm_with_default_disposition_flushes_and_still_ends_by_the_signal(tmp_path):
    child = start_child("sigterm-default", str(tmp_path), "term")
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGTERM, err
    assert "no signal came" not in out
    run = read_run(tmp_path / "term")
    assert set(run.steps["step"]) == set(range(log_child.STEPS_BEFORE_SIGNAL))
    assert json.loads((tmp_path / "term" / "run.json").read_text())["status"] == "terminated"
    assert not run.is_live


def test_interpreter_exit_without_close_flushes_and_closes_the_run(tmp_path):
    child = start_child("atexit", str(tmp_path), "exit")
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    run = read_run(tmp_path / "exit")
    expected = set(range(log_child.STEPS_BEFORE_SIGNAL))
    assert set(run.steps["step"]) == expected
    assert_rows_match_child(run, expected)
    assert run.meta["status"] == "closed"


@pytest.mark.parametrize("mode", ["sigterm-chained", "sigterm-default"])
def test_a_killed_idle_child_wrote_nothing_so_the_sigterm_rows_came_from_the_handler(tmp_path, mode):
    child = start_child(mode, str(tmp_path), "idle")
    assert child.stdout.readline().strip() == "ready"
    child.kill()
    child.communicate(timeout=30)
    assert not list((tmp_path / "idle" / "steps").glob("*.parquet"))


def test_a_forked_child_exiting_leaves_the_parents_log_open_and_working(tmp_path):
    child = start_child("fork", str(tmp_path), "forked")
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "status after the child exited: running" in out
    run = read_run(tmp_path / "forked")
    assert run.meta["status"] == "closed"
    assert_rows_match_child(run, {0, 1})


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from Linux /proc")
def test_background_threads_leave_sigterm_and_sigint_to_the_main_thread(tmp_path):
    """A signal sent to the process goes to any thread not blocking it; a main thread asleep or in
    a long C call would not run the SIGTERM flush until that call returned (seen once in CI: the
    sigterm-chained child above hung for 30 s). Every entropymon thread must block both."""
    from entropymon.log.cache import _pool
    from entropymon.log.writer import RunLog

    log = RunLog(tmp_path, "masks", flush_interval_s=0.05)
    log.log_step(1, {"entropy_mean": 0.5})
    assert log.flush(timeout=10)
    assert len(read_run(tmp_path / "masks").steps) == 1
    pool = _pool(2)  # the file cache's read threads, as a refresh of many new files starts them
    list(pool.map(abs, range(8)))
    try:
        ours = [t for t in threading.enumerate() if t.name.startswith("entropymon")]
        names = {t.name.split("[")[0].rstrip("_0123456789") for t in ours}
        assert {"entropymon-writer", "entropymon-read"} <= names, names
        for thread in ours:
            blocked = blocked_signals(thread.native_id)
            assert {int(signal.SIGTERM), int(signal.SIGINT)} <= blocked, (thread.name, sorted(blocked))
        main = blocked_signals(threading.main_thread().native_id)
        assert int(signal.SIGTERM) not in main and int(signal.SIGINT) not in main
    finally:
        log.close()
