"""Writers sharing a run, background merging and what the reader refuses to follow.

- every writer gets a segment of its own, atomically, across threads and processes (even two
  processes started at the same instant), so no writer overwrites another's rows;
- the writer keeps the files of a segment bounded by merging its own chunks, and the run reads
  exactly the same as it would unmerged;
- symbolic links in a table folder are never followed (a loop does not make the run unreadable,
  a link out of the run folder is not read).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import log_child  # tests/ is on sys.path under pytest's default import mode
from entropymon.log.merge import FANOUT
from entropymon.log.reader import read_run
from entropymon.log.schema import TABLES, ChunkName
from entropymon.log.writer import RunLog

CHILD = Path(__file__).with_name("log_child.py")
ROOT = CHILD.parent.parent


def expected_steps(steps) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, **log_child.step_metrics(s)} for s in steps])


def test_writers_opened_by_many_threads_at_once_get_distinct_segments_and_keep_every_row(tmp_path):
    n_writers, per_writer = 8, 5
    barrier = threading.Barrier(n_writers)
    logs: list[RunLog] = [None] * n_writers

    def open_and_write(index: int) -> None:
        barrier.wait()
        log = logs[index] = RunLog(tmp_path, "r", flush_interval_s=3600)
        for step in range(index * 100, index * 100 + per_writer):
            log.log_step(step, log_child.step_metrics(step))
            log.flush()
        log.close()

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(n_writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(log.segment for log in logs) == list(range(n_writers))
    steps = read_run(tmp_path / "r").steps
    wanted = [i * 100 + k for i in range(n_writers) for k in range(per_writer)]
    pd.testing.assert_frame_equal(steps[["step", "entropy_mean", "reward_mean"]], expected_steps(wanted))


def test_two_processes_started_at_the_same_instant_on_one_run_keep_every_row(tmp_path):
    for attempt in range(2):  # two runs of the race, each with both children released together
        start_at = time.time() + 2.5  # both children import entropymon first, then wait for this
        run = f"race{attempt}"
        children = [subprocess.Popen([sys.executable, str(CHILD), "write", str(tmp_path), run, str(first), "20",
                                      str(start_at)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for first in (0, 1000)]
        outputs = [child.communicate(timeout=120) for child in children]
        for child, (out, err) in zip(children, outputs):
            assert child.returncode == 0, err  # neither constructor failed
            assert out.split()[0] == "ready" and len(out.split()) == 21, (out, err)
        run_ = read_run(tmp_path / run)
        wanted = [*range(20), *range(1000, 1020)]
        pd.testing.assert_frame_equal(run_.steps[["step", "entropy_mean", "reward_mean"]], expected_steps(wanted))
        assert len(run_.samples) == 40 * log_child.SAMPLES_PER_STEP
        assert len(run_.tokens) == 40 * log_child.TOKENS_PER_STEP
        assert not list((tmp_path / run).glob(".*.tmp"))


def test_a_writer_keeps_its_files_bounded_by_merging_and_the_run_reads_the_same(tmp_path):
    steps = 100
    fanout = 3
    with RunLog(tmp_path, "r", flush_interval_s=3600, merge_fanout=fanout) as log:
        most = 0
        for step in range(steps):
            log_child.log_one(log, step)
            log.log_step(step, {"eval_accuracy": step / 1000})  # a second row of the step, merged by the reader
            assert log.flush(timeout=10)
            most = max(most, max(len(list((tmp_path / "r" / t).glob("rank-*.parquet"))) for t in TABLES))
        assert log._worker.merges > 0
    # chunks of a tier are merged as soon as `fanout` of them exist: at most fanout-1 per tier
    # (and fanout for an instant), tiers up to log_fanout(steps)
    tiers = int(np.ceil(np.log(steps) / np.log(fanout))) + 1
    assert most <= fanout * tiers
    run = read_run(tmp_path / "r")
    assert len(run.files) <= 3 * (fanout - 1) * tiers
    frame = run.steps
    assert frame["step"].tolist() == list(range(steps))
    np.testing.assert_array_equal(frame["entropy_mean"], [log_child.step_metrics(s)["entropy_mean"] for s in range(steps)])
    np.testing.assert_array_equal(frame["eval_accuracy"], [s / 1000 for s in range(steps)])
    samples = run.samples
    assert len(samples) == steps * log_child.SAMPLES_PER_STEP
    np.testing.assert_array_equal(samples["reward"], samples["step"] * 0.5)
    assert run.tokens["step"].tolist() == list(np.repeat(np.arange(steps), log_child.TOKENS_PER_STEP))
    merged = [ChunkName.parse(p.name) for p in run.files]
    assert any(name.merged for name in merged)


def test_merged_files_read_like_the_chunks_they_replaced_even_when_both_are_on_disk(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=3600, merge_fanout=1000) as log:  # no merging
        for step in range(6):
            log_child.log_one(log, step)
            log.flush()
    run_path = tmp_path / "r"
    before = {table: getattr(read_run(run_path), table) for table in TABLES}
    # a merge interrupted right after its rename: the merged file and its sources side by side
    for table in TABLES:
        sources = sorted((run_path / table).glob("rank-0.seg-0.chunk-*.parquet"), key=lambda p: ChunkName.parse(p.name))
        first, last = ChunkName.parse(sources[1].name), ChunkName.parse(sources[4].name)
        merged = pa.concat_tables([pq.read_table(p) for p in sources[1:5]])
        pq.write_table(merged, run_path / table / ChunkName(0, 0, first.chunk, last.last).filename)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after = read_run(run_path)
        for table in TABLES:
            pd.testing.assert_frame_equal(getattr(after, table), before[table])
    assert len(after.files) == 3 * 3
    RunLog(tmp_path, "r").close()  # the next writer start deletes the hidden sources
    assert len([p for t in TABLES for p in (run_path / t).glob("*.parquet")]) == 3 * 3 + 0


def test_a_symlink_loop_in_a_table_folder_is_skipped_with_a_warning(tmp_path):
    with RunLog(tmp_path, "r") as log:
        log_child.log_one(log, 0)
    loop = tmp_path / "r" / "steps" / "rank-0.seg-9.chunk-0.parquet"
    os.symlink(loop.name, loop)  # points at itself
    with pytest.warns(UserWarning, match="symbolic link"):
        run = read_run(tmp_path / "r")
        assert run.steps["step"].tolist() == [0]


def test_a_chunk_that_links_to_a_parquet_file_outside_the_run_is_not_read(tmp_path):
    with RunLog(tmp_path, "r") as log:
        log_child.log_one(log, 0)
    outside = tmp_path / "elsewhere.parquet"
    pq.write_table(pa.table({"step": [5], "rank": pa.array([0], pa.int32()), "entropy_mean": [9.0]}), outside)
    os.symlink(outside, tmp_path / "r" / "steps" / "rank-0.seg-3.chunk-0.parquet")
    with pytest.warns(UserWarning, match="links are not followed"):
        steps = read_run(tmp_path / "r").steps
    assert steps["step"].tolist() == [0]


def test_the_merge_fanout_is_checked(tmp_path):
    from entropymon.errors import InputError

    with pytest.raises(InputError, match="merge_fanout: expected an integer >= 2"):
        RunLog(tmp_path, "r", merge_fanout=1)
    assert FANOUT >= 2


def test_refresh_reads_only_new_rows_through_merges_and_equals_a_fresh_read(tmp_path):
    run = None
    with RunLog(tmp_path, "r", flush_interval_s=3600, merge_fanout=2) as log:  # merges after nearly every flush
        for step in range(40):
            log_child.log_one(log, step)
            assert log.flush(timeout=10)
            if run is None:
                run = read_run(tmp_path / "r")
            run.refresh()
            fresh = read_run(tmp_path / "r")
            for table in TABLES:
                pd.testing.assert_frame_equal(getattr(run, table), read_table_fully(fresh, table))
        log.log_step(39, {"eval_accuracy": 0.5})  # a second row of a step already read: merged by the rules
        log.flush(timeout=10)
    views = run._views
    assert all(view.full_reads == 1 for view in views.values())  # 40 refreshes, each reading new rows only
    run.refresh()
    assert run.steps.set_index("step").loc[39, "eval_accuracy"] == 0.5
    assert views["steps"].full_reads == 2
    pd.testing.assert_frame_equal(run.steps, read_table_fully(read_run(tmp_path / "r"), "steps"))


def read_table_fully(run, table: str) -> pd.DataFrame:
    from entropymon.log.reader import read_table

    return read_table(run.path, table)


def test_refresh_after_a_restarted_writer_relogs_steps_keeps_only_the_newest_rows(tmp_path):
    with RunLog(tmp_path, "r") as log:
        for step in range(5):
            log_child.log_one(log, step)
    run = read_run(tmp_path / "r")
    assert len(run.samples) == 5 * log_child.SAMPLES_PER_STEP
    with RunLog(tmp_path, "r") as log:  # resumed from a checkpoint at step 3
        for step in (3, 4, 5):
            log.log_step(step, {"entropy_mean": -1.0})
            log.log_samples(step, {"sample_id": [0], "reward": [-1.0]})
    run.refresh()
    assert run.steps["entropy_mean"].tolist()[3:] == [-1.0, -1.0, -1.0]
    assert run.samples[run.samples["step"] >= 3]["reward"].tolist() == [-1.0, -1.0, -1.0]
    pd.testing.assert_frame_equal(run.samples, read_table_fully(run, "samples"))


def test_step_metrics_after_live_refreshes_equal_combining_every_rank_again(tmp_path):
    from entropymon.metrics.stats import combine_ranks

    logs = [RunLog(tmp_path, "r", rank=rank, flush_interval_s=3600) for rank in range(3)]
    run = None
    for step in range(6):
        for rank, log in enumerate(logs):
            if step == 4 and rank == 2:
                continue  # a rank that missed a step
            log.log_step(step, {"entropy_mean": step + rank / 10, "n_tokens": 10.0 + rank, "lr": 0.1})
            log.flush()
            run = run or read_run(tmp_path / "r")
            incremental = run.refresh().step_metrics
            expected = combine_ranks(read_table_fully(run, "steps"))
            pd.testing.assert_frame_equal(incremental[sorted(incremental.columns)], expected[sorted(expected.columns)])
    for log in logs:
        log.close()
    assert run._views["steps"].full_reads == 1
    assert run.step_metrics["n_ranks"].tolist() == [3, 3, 3, 3, 2, 3]


def test_hiding_merged_ranges_agrees_with_checking_every_pair():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from entropymon.log.layout import _inside_another, _outer_ranges

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 6)), max_size=30))
    def check(spans):
        # tiered merges only ever produce nested or disjoint ranges: build them from power-of-two blocks
        names = {ChunkName(0, segment, start, start + (1 << level) - 1)
                 for segment, start, level in ((s, (b >> lv) << lv, lv) for s, b, lv in spans)}
        for name in names:
            brute = any(other.contains(name) for other in names if other.merged)
            assert _inside_another(name, _outer_ranges([n for n in names if n.merged])) == brute, name

    check()


def test_refresh_of_a_run_read_while_it_had_no_rows_yet(tmp_path):
    log = RunLog(tmp_path, "r", flush_interval_s=3600)
    run = read_run(tmp_path / "r")
    assert run.steps.empty and run.samples.empty
    log_child.log_one(log, 0)
    log.flush()
    assert run.refresh().steps["step"].tolist() == [0]
    assert len(run.samples) == log_child.SAMPLES_PER_STEP
    log.close()


def _entropy_row(rng: np.random.Generator) -> dict:
    """A step row with the entropy family's stat/ columns (its histogram a list column) and the
    registered entropy_hist list, from a real EntropyStats."""
    from entropymon.metrics.stats import EntropyStats, entropy_histogram

    entropy = rng.gamma(0.5, 1.0, int(rng.integers(50, 200)))
    stats = EntropyStats(len(entropy), float(entropy.sum()), 4, float(entropy.mean() * 4),
                         int((entropy > 0.672).sum()), float(entropy.max()), entropy_histogram(entropy),
                         len(entropy), float(rng.random() * len(entropy)))
    return {**stats.compute(), **stats.to_columns(), "entropy_hist": stats.hist.tolist()}


def test_step_metrics_summing_arrow_list_columns_as_matrices_equal_the_per_row_sums(tmp_path):
    """The reader holds list columns Arrow-backed and Run.step_metrics sums them as one matrix per
    column; the result equals combine_ranks on the plain steps (one array per row, the other path)
    and numpy's own sum of the ranks' histograms, also where a rank missed a step."""
    from entropymon.metrics import list_columns
    from entropymon.metrics.stats import N_ENTROPY_BINS, combine_ranks

    rng = np.random.default_rng(3)
    rows = {}
    for rank in range(3):  # one file per rank: the reader reorders rows to (step, rank)
        with RunLog(tmp_path, "r", rank=rank, flush_interval_s=3600) as log:
            for step in range(8):
                if (step, rank) == (5, 1):
                    continue
                rows[step, rank] = _entropy_row(rng)
                log.log_step(step, rows[step, rank])
    run = read_run(tmp_path / "r")
    held = run._frame("steps")
    assert {name for name in held.columns if list_columns.is_arrow_list(held[name])} == {
        "entropy_hist", "stat/entropy_hist"}
    steps = run.steps
    assert steps["entropy_hist"].dtype == object and isinstance(steps["entropy_hist"][0], np.ndarray)
    np.testing.assert_array_equal(list_columns.matrix(held["entropy_hist"]), np.stack(steps["entropy_hist"].to_numpy()))
    combined = run.step_metrics
    pd.testing.assert_frame_equal(combined, combine_ranks(steps.copy()))
    pd.testing.assert_frame_equal(combined, combine_ranks(held))
    for step in range(8):
        ranks = [r for r in range(3) if (step, r) in rows]
        expected = np.sum([rows[step, r]["entropy_hist"] for r in ranks], axis=0)
        assert combined["entropy_hist"][step] == expected.tolist()
        assert combined["stat/entropy_hist"][step] == expected.tolist()
        assert len(expected) == N_ENTROPY_BINS


def test_a_list_column_of_several_lengths_has_no_matrix_and_sums_per_row(tmp_path):
    from entropymon.metrics import list_columns
    from entropymon.metrics.stats import combine_ranks

    for rank in range(2):
        with RunLog(tmp_path, "r", rank=rank) as log:
            log.log_step(0, {"entropy_hist": [1, 2, 3 + rank]})
            log.log_step(1, {"entropy_hist": [1, 2 + rank]})  # lists of another length: no one matrix
    run = read_run(tmp_path / "r")
    assert list_columns.matrix(run._frame("steps")["entropy_hist"]) is None
    combined = run.step_metrics
    pd.testing.assert_frame_equal(combined, combine_ranks(run.steps.copy()))
    assert combined["entropy_hist"].tolist() == [[2, 4, 7], [2, 5]]


def _assert_plain_frames_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal frames, list columns compared row by row (arrays of the same dtype, or both null)."""
    lists = [name for name in expected.columns if expected[name].dtype == object
             and any(isinstance(v, np.ndarray) for v in expected[name])]
    pd.testing.assert_frame_equal(actual.drop(columns=lists), expected.drop(columns=lists))
    for name in lists:
        assert actual[name].dtype == object, name
        for got, want in zip(actual[name], expected[name]):
            if want is None:
                assert got is None, name
            else:
                assert isinstance(got, np.ndarray) and got.dtype == want.dtype, name
                np.testing.assert_array_equal(got, want)


def test_steps_with_arrow_held_lists_equal_an_eager_read_cold_after_refreshes_and_merges(tmp_path, monkeypatch):
    """run.steps converts the list columns the reader holds Arrow-backed only when asked: the frame
    equals what pyarrow's default conversion gives (read_table), with null lists, across live
    refreshes that append rows (converting only the rows a refresh appended), and after a merge rule."""
    from entropymon.log import reader
    from entropymon.log.reader import read_table

    converted = []
    real_plain_frame = reader.plain_frame
    monkeypatch.setattr(reader, "plain_frame", lambda frame: converted.append(len(frame)) or real_plain_frame(frame))
    logs = [RunLog(tmp_path, "r", rank=rank, flush_interval_s=3600) for rank in range(2)]
    run = read_run(tmp_path / "r")
    for step in range(6):
        for rank, log in enumerate(logs):
            row = {"entropy_mean": step + rank / 10}
            if (step + rank) % 3:
                row["entropy_hist"] = [step, rank, 1]  # some rows without the list: null there
            log.log_step(step, row)
            log.flush()
        run.refresh()
        converted.clear()
        _assert_plain_frames_equal(run.steps, read_table(tmp_path / "r", "steps"))
        if step >= 2:  # the list column is there from the start: each refresh appends one step's rows
            assert converted == [2], converted
    logs[0].log_step(5, {"eval_accuracy": 0.5})  # a second row of a step already read: merged
    for log in logs:
        log.close()
    run.refresh()
    _assert_plain_frames_equal(run.steps, read_table(tmp_path / "r", "steps"))
    _assert_plain_frames_equal(read_run(tmp_path / "r").steps, read_table(tmp_path / "r", "steps"))
    assert run.steps.set_index(["step", "rank"]).loc[(5, 0), "eval_accuracy"] == 0.5
    assert [None if v is None else v.tolist() for v in run.steps["entropy_hist"][:4]] == [
        None, [0, 1, 1], [1, 0, 1], [1, 1, 1]]
    assert run.steps is run.steps  # converted once per version of the table


def test_a_view_appending_straggling_ranks_holds_what_a_fresh_read_holds_and_names_the_appended_rows(tmp_path_factory):
    """TableView keeps appended rows as a tail beside those it held (joined on ``frame`` or past
    1/JOIN_SHARE): ranks that run ahead and behind (a straggler's rows sort among the held ones and
    split them), columns that come and go, columns left out. After every update the rows of
    ``appended_steps`` (``appended_rows``, index and types included) and the frame equal a fresh read's."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from entropymon.log import view as view_module
    from entropymon.log.view import TableView

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(moves=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.booleans()), min_size=1, max_size=14),
           join_share=st.sampled_from([0, 8]), exclude=st.sampled_from([frozenset(), frozenset({"b"})]))
    def check(moves, join_share, exclude):
        path = tmp_path_factory.mktemp("view")
        logs = [RunLog(path, "r", rank=rank, flush_interval_s=3600) for rank in range(3)]
        next_step = [0, 0, 0]
        view = TableView(path / "r" / "steps", merge_step_rows=True, exclude=exclude)
        before, held = view.version, None
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(view_module, "JOIN_SHARE", join_share)
            try:
                for rank, then, late_column in moves:  # then: 0 log on, 1 update, 2 update and join
                    step = next_step[rank]
                    next_step[rank] += 1
                    row = {"a": step + rank / 10, "b": float(rank), "n": step * 3 + rank}
                    if late_column:
                        row["flag"] = bool(step % 2)  # a bool column most rows lack: object once joined
                    logs[rank].log_step(step, row)
                    assert logs[rank].flush(timeout=10)
                    if not then:
                        continue  # the next update sees several new steps
                    view.update()
                    fresh = TableView(view.folder, merge_step_rows=True, exclude=exclude).read()
                    if view.previous_version is not None and view.previous_version == before:
                        expected = fresh[fresh["step"].isin(view.appended_steps)]
                        pd.testing.assert_frame_equal(view.appended_rows(), expected, check_exact=True)
                        # the other steps' rows, and the first kept_rows rows, are what the last version held
                        # (a column new in this version is empty there; bool columns may have become object)
                        kept, old = (f[~f["step"].isin(view.appended_steps)].reset_index(drop=True) for f in (fresh, held))
                        common = [name for name in fresh.columns if name in held.columns]
                        assert kept.drop(columns=common).isna().all().all()
                        pd.testing.assert_frame_equal(kept[common], old[common], check_exact=True, check_dtype=False)
                        pd.testing.assert_frame_equal(fresh.iloc[:view.kept_rows][common], held.iloc[:view.kept_rows][common],
                                                      check_exact=True, check_dtype=False)
                    before, held = view.version, fresh
                    if then == 2:
                        pd.testing.assert_frame_equal(view.frame, fresh, check_exact=True)
                view.update()
                pd.testing.assert_frame_equal(view.frame, TableView(view.folder, True, exclude).read(), check_exact=True)
                assert view.full_reads == 1  # every later change was an append
                assert "b" not in view.frame.columns if exclude else "b" in view.frame.columns
            finally:
                for log in logs:
                    log.close()

    check()


def test_threads_sharing_a_run_of_a_live_run_see_each_row_once(tmp_path):
    """A dashboard's callbacks run on several threads and share one Run per run: a refresh while
    others read must neither append the new rows twice nor break a reader."""
    from entropymon.log.reader import read_table
    from entropymon.metrics.stats import combine_ranks

    logs = [RunLog(tmp_path, "r", rank=rank, flush_interval_s=3600) for rank in range(4)]
    run = read_run(tmp_path / "r")

    def read(barrier: threading.Barrier, first: bool, seen: list, errors: list) -> None:
        barrier.wait()
        try:
            if first:
                run.refresh()
            seen.append((run.steps, run.step_metrics))
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    try:
        for step in range(20):
            for log in logs:
                log.log_step(step, {"entropy_mean": step + log.rank / 10, "n_tokens": 10.0 + log.rank})
                assert log.flush(timeout=10)
            barrier, seen, errors = threading.Barrier(4), [], []
            threads = [threading.Thread(target=read, args=(barrier, i == 0, seen, errors)) for i in range(4)]
            run.refresh()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            expected = read_table(tmp_path / "r", "steps")
            for steps, metrics in seen:
                pd.testing.assert_frame_equal(steps, expected)
                pd.testing.assert_frame_equal(metrics, combine_ranks(expected))
    finally:
        for log in logs:
            log.close()
