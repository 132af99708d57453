"""Logs at real-run scale: files per segment, cold reads, live refreshes, rank merging (issue 10).

The shape of a slow multi-GPU job: ``--ranks`` writers (one RunLog per rank, as each GPU's
process has) log ``--steps`` steps of a Monitor-like step row (the registry's metrics and every
``stat/`` column of the five stats families, from real stats objects) plus ``--samples`` sample
rows per step, and flush after every step (what the default 2 s flush interval gives a trainer
slower than 2 s per step). Figures, each next to a baseline measured in the same run:
- the most chunk files any rank-segment and table holds at any time while writing (checked every
  ``--check-every`` steps), against a writer that does not merge (``merge_fanout`` 10**9);
- cold ``read_run(path).steps`` / ``.samples`` / ``.step_metrics`` (file cache emptied, OS page
  cache warm), merged run vs. the unmerged baseline run of the same rows;
- ``refresh()`` then ``.steps`` and ``.samples``: with nothing new, and after one more step of
  every rank; ``step_metrics`` after that refresh;
- ``combine_ranks`` on ``--combine-ranks`` x ``--combine-steps`` rows vs. the per-step merge of
  stats objects it replaced (timed on a slice, scaled linearly), equal to 1e-12;
- ``compact_run`` of each finished run (the writers closed), merged vs. the unmerged baseline, and
  the cold read after it (the issue measured 40 s to compact 8 x 1,500 steps of one flush each).
Durability calls (fsync) are switched off while writing the runs, to keep generating them short
on a shared machine; reads do not depend on them. The writer's own throughput and the
training-thread latency are ``benchmarks/writer.py``'s.

Targets (issue 10): at 8 ranks x 10,000 steps x 16 samples: <= 64 files per rank-segment and
table at any time, cold steps <= 2 s, samples <= 3 s, refresh <= 50 ms with nothing new and
<= 200 ms after one step, step_metrics <= 1 s; combine_ranks on 64 x 10,000 <= 2 s.
Run: ``python benchmarks/scale.py [--ranks 8] [--steps 10000] [--baseline-steps 2000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from entropymon.log import durable
from entropymon.log.cache import TABLE_CACHE
from entropymon.log.compact import compact_run
from entropymon.log.reader import read_run
from entropymon.log.schema import TABLES, ChunkName
from entropymon.log.writer import RunLog
from entropymon.metrics import list_columns
from entropymon.metrics.stats import (
    ENTROPY_HIST_EDGES,
    CovStats,
    EntropyStats,
    EssStats,
    GroupStats,
    KlModeStats,
    combine_ranks,
    entropy_histogram,
)

# the per-step merge combine_ranks replaced is the tests' reference (tests/reference_combine.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_combine import reference_combine_ranks  # noqa: E402


def step_row(rng: np.random.Generator) -> dict:
    """A Monitor-like step row: metrics and stat/ columns of every family, from real stats objects."""
    n = int(rng.integers(2000, 4000))
    entropy = rng.gamma(0.5, 1.0, n)
    rewards = (rng.random(16) > 0.5).astype(float)
    stats = [
        EntropyStats(n, float(entropy.sum()), 16, float(entropy.mean() * 16), int((entropy > 0.672).sum()),
                     float(entropy.max()), entropy_histogram(entropy), n, float(rng.random() * n)),
        CovStats(*(float(v) for v in rng.random(18) * 10)),
        GroupStats(4, int(rng.integers(0, 4)), 16, float(rewards.sum()), float(rewards.sum()), 16,
                   float(rng.normal()), float(rng.random() * 16), 16, 4000.0, 1.1e6, 50.0, 600.0, 3.0, 4, 2.0, 4,
                   {1: (2.0, 4), 4: (3.0, 4), 8: (3.5, 4)}, {1: (3.1, 4), 2: (3.5, 4)}),
        EssStats(n, 0.1, float(rng.random() * n), float(rng.random() * n)),
        KlModeStats(4, float(rng.random() * 4), float(rng.random() * 8)),
    ]
    stats[1].n = n
    stats[1].n_pos = n // 2
    stats[1].n_neg = n // 2
    stats[1].top_0_02pct_n = 1
    stats[1].top_0_2pct_n = 6
    row = {"lr": 1e-6, "monitor_errors": 0.0, "monitor_bad_rows": 0.0, "dropped_rows": 0.0,
           "entropy_temperature": 1.0, "entropy_hist": stats[0].hist.tolist()}
    for s in stats:
        row.update(s.compute())
        row.update(s.to_columns())
    return row


def sample_rows(rng: np.random.Generator, n: int) -> dict:
    return {"sample_id": np.arange(n), "group_id": np.repeat(np.arange(n // 4), 4), "reward": rng.random(n),
            "advantage": rng.normal(size=n), "length": rng.integers(10, 600, n), "entropy_mean": rng.random(n),
            "entropy_max": rng.random(n) * 5, "text": [f"completion {i} " * 8 for i in range(n)]}


def files_per_segment(run_path: Path) -> int:
    most = 0
    for table in TABLES:
        names = [ChunkName.parse(name) for name in os.listdir(run_path / table)]
        counts = Counter((n.rank, n.segment) for n in names if n is not None)
        most = max([most, *counts.values()])
    return most


def write_run(logdir: Path, run: str, ranks: int, steps: int, samples: int, fanout: int, check_every: int,
              rows: list[dict], seed: int = 0, flush_every: int = 1) -> tuple[float, int]:
    """Write the run rank by rank in lockstep; (seconds, most files per rank-segment and table seen)."""
    rng = np.random.default_rng(seed)
    logs = [RunLog(logdir, run, rank=r, flush_interval_s=3600, merge_fanout=fanout) for r in range(ranks)]
    most = 0
    started = time.perf_counter()
    for step in range(steps):
        for rank, log in enumerate(logs):
            log.log_step(step, rows[(step * ranks + rank) % len(rows)])
            log.log_samples(step, sample_rows(rng, samples))
        if (step + 1) % flush_every == 0 or step == steps - 1:
            for log in logs:
                log.flush()
        if step % check_every == 0 or step == steps - 1:
            most = max(most, files_per_segment(logdir / run))
    for log in logs:
        if log.errors or log.dropped_rows:
            raise RuntimeError(f"the writer lost rows: errors={log.errors} dropped={log.dropped_rows}")
        log.close()
    return time.perf_counter() - started, most


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def timed_cpu(function) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of the process, value): on a shared machine the CPU time is the
    figure that does not move with the other jobs' load (the wall time of an idle machine is at
    most about it: the reads use a few threads, the rest is one)."""
    started, cpu = time.perf_counter(), time.process_time()
    value = function()
    return time.perf_counter() - started, time.process_time() - cpu, value


def cold_reads(run_path: Path) -> dict[str, float]:
    TABLE_CACHE.clear()
    run = read_run(run_path)
    out = {}
    out["steps"], out["steps cpu"], steps = timed_cpu(lambda: run.steps)
    out["samples"], out["samples cpu"], _ = timed_cpu(lambda: run.samples)
    out["step_metrics"], out["step_metrics cpu"], combined = timed_cpu(lambda: run.step_metrics)
    out["n_steps"] = len(combined)
    out["files"] = len(run.files)
    return out


def live_refreshes(run_path: Path, ranks: int, samples: int, rows: list[dict], repeats: int = 5) -> dict[str, float]:
    """Medians over ``repeats``: refresh with nothing new, and after each of ``repeats`` new steps."""
    run = read_run(run_path)
    _ = run.steps, run.samples, run.step_metrics  # warm: the cold load is not what this measures
    nothing = [timed(lambda: (run.refresh().steps, run.samples))[0] for _ in range(repeats)]
    rng = np.random.default_rng(1)
    logs = [RunLog(run_path.parent, run_path.name, rank=r, flush_interval_s=3600, merge_fanout=8) for r in range(ranks)]
    one, metrics = [], []
    for _ in range(repeats):
        last = int(run.steps["step"].max())
        for rank, log in enumerate(logs):
            log.log_step(last + 1, rows[rank % len(rows)])
            log.log_samples(last + 1, sample_rows(rng, samples))
            log.flush()
        one.append(timed(lambda: (run.refresh().steps, run.samples))[0])
        seconds, combined = timed(lambda: run.step_metrics)
        metrics.append(seconds)
        assert combined["step"].iloc[-1] == last + 1 and combined["n_ranks"].iloc[-1] == ranks
    for log in logs:
        log.close()
    full = {name: view.full_reads for name, view in run._views.items() if view.frame is not None}
    assert full == {"steps": 1, "samples": 1}, full  # every refresh read only what was new
    return {"nothing new": float(np.median(nothing)), "one new step": float(np.median(one)),
            "step_metrics after it": float(np.median(metrics))}


def compacting(run_path: Path, name: str) -> None:
    """Time ``compact_run`` of the finished run and check it reads the same after (fsync as while writing)."""
    TABLE_CACHE.clear()
    before = read_run(run_path)
    expected = {table: getattr(before, table) for table in ("steps", "samples")}
    files = len(before.files)
    TABLE_CACHE.clear()
    seconds, cpu, result = timed_cpu(lambda: compact_run(run_path))
    after = cold_reads(run_path)
    run = read_run(run_path)
    for table, frame in expected.items():
        pd.testing.assert_frame_equal(getattr(run, table), frame)  # not a row lost, added or changed
    print(f"compact {name}: {files} files -> {after['files']} in {seconds:.2f} s ({cpu:.2f} CPU-s); cold read after: "
          f"steps {after['steps']:.2f} s, samples {after['samples']:.2f} s, step_metrics {after['step_metrics']:.2f} s",
          flush=True)


def rank_frame(rows: list[dict], ranks: int, steps: int) -> pd.DataFrame:
    """ranks x steps step rows as the reader returns them (lists as numpy arrays)."""
    template = pd.DataFrame(rows)
    index = np.arange(ranks * steps) % len(rows)
    frame = template.iloc[index].reset_index(drop=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = [np.asarray(v) for v in frame[column]]
    frame.insert(0, "rank", np.tile(np.arange(ranks, dtype=np.int32), steps))
    frame.insert(0, "step", np.repeat(np.arange(steps, dtype=np.int64), ranks))
    return frame


def arrow_lists(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its list columns Arrow-backed, as the reader holds the steps table (``Run.step_metrics``
    combines that frame; ``run.steps`` gives users the plain one)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.to_pandas(types_mapper=list_columns.arrow_lists)


def combine_figures(rows: list[dict], ranks: int, steps: int, reference_steps: int) -> dict[str, float]:
    frame = rank_frame(rows, ranks, steps)
    held = arrow_lists(frame)
    arrow_seconds, arrow_cpu, from_arrow = timed_cpu(lambda: combine_ranks(held))
    seconds, cpu, combined = timed_cpu(lambda: combine_ranks(frame))
    pd.testing.assert_frame_equal(from_arrow, combined)  # the two paths give the same rows, exactly
    part = frame[frame["step"] < reference_steps]
    reference_seconds, expected = timed(lambda: reference_combine_ranks(part))
    actual = combined[combined["step"] < reference_steps]
    worst = 0.0
    for column in expected.columns:
        e, a = expected[column].to_numpy(), actual[column].to_numpy()
        if e.dtype == object:
            assert all(list(x) == list(y) for x, y in zip(a, e)), column
            continue
        e, a = e.astype(float), a.astype(float)
        both = np.isfinite(e) & np.isfinite(a)
        assert (np.isnan(e) == np.isnan(a)).all(), column
        difference = np.abs(a[both] - e[both]) / np.maximum(1.0, np.abs(e[both]))
        worst = max(worst, float(difference.max(initial=0.0)))
    assert worst <= 1e-12, worst
    return {"vectorised": seconds, "vectorised cpu": cpu, "arrow lists": arrow_seconds, "arrow lists cpu": arrow_cpu,
            "reference (scaled)": reference_seconds * steps / reference_steps,
            "max relative difference": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--baseline-steps", type=int, default=2000, help="steps of the unmerged baseline run")
    parser.add_argument("--check-every", type=int, default=50)
    parser.add_argument("--flush-every", type=int, default=1,
                        help="steps per flush (1 is the target's shape; more makes a read-side run of many steps quicker to write)")
    parser.add_argument("--combine-ranks", type=int, default=64)
    parser.add_argument("--combine-steps", type=int, default=10_000)
    parser.add_argument("--fsync", action="store_true", help="keep the durability calls while writing")
    parser.add_argument("--skip-combine", action="store_true")
    args = parser.parse_args()
    if not args.fsync:
        durable._fsync_file = lambda path: None
        durable.fsync_dir = lambda folder: None
    rng = np.random.default_rng(0)
    rows = [step_row(rng) for _ in range(64)]
    print(f"edges {len(ENTROPY_HIST_EDGES)}, step row {len(rows[0])} columns, {args.samples} samples per step; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as logdir:
        logdir = Path(logdir)
        results = {}
        for name, steps, fanout in (("merged", args.steps, 8), ("unmerged baseline", args.baseline_steps, 10**9)):
            if not steps:
                continue
            seconds, most = write_run(logdir, name, args.ranks, steps, args.samples, fanout, args.check_every, rows,
                                      flush_every=args.flush_every)
            print(f"write {name}: {args.ranks} ranks x {steps} steps, a flush every {args.flush_every}, in {seconds:.0f} s; "
                  f"most files per rank-segment and table: {most}", flush=True)
            results[name] = cold_reads(logdir / name)
            reads = results[name]
            print(f"  cold read ({reads['files']} files), wall (CPU) seconds: steps {reads['steps']:.2f} "
                  f"({reads['steps cpu']:.2f}), samples {reads['samples']:.2f} ({reads['samples cpu']:.2f}), "
                  f"step_metrics {reads['step_metrics']:.2f} ({reads['step_metrics cpu']:.2f}) "
                  f"({reads['n_steps']} steps)", flush=True)
        if args.steps:
            live = live_refreshes(logdir / "merged", args.ranks, args.samples, rows)
            print("live refresh of the merged run: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in live.items()))
        for name in results:
            compacting(logdir / name, name)
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.skip_combine:
        return
    combine = combine_figures(rows, args.combine_ranks, args.combine_steps, reference_steps=100)
    print(f"combine_ranks {args.combine_ranks} ranks x {args.combine_steps} steps: {combine['arrow lists']:.2f} s "
          f"({combine['arrow lists cpu']:.2f} CPU-s) with list columns Arrow-backed as the reader holds them, "
          f"{combine['vectorised']:.2f} s ({combine['vectorised cpu']:.2f} CPU-s) with one array per row (run.steps) "
          f"vectorised vs {combine['reference (scaled)']:.0f} s per-step merge (timed on 100 steps, scaled); "
          f"max relative difference {combine['max relative difference']:.1e}")


if __name__ == "__main__":
    main()
