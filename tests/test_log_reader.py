"""read_run / list_runs / read_table: exact read-back, merging rules, bad files, caching, live runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import log_child  # tests/ is on sys.path under pytest's default import mode
from entropymon.errors import InputError, LogFormatError, RunNotFoundError
from entropymon.log import durable, reader
from entropymon.log.cache import TABLE_CACHE, FileTableCache
from entropymon.log.reader import list_runs, read_run, read_table, table_steps
from entropymon.log.writer import RunLog

CHILD = Path(__file__).with_name("log_child.py")


def write_run(logdir: Path, run: str = "r", steps=range(4), **kwargs) -> Path:
    with RunLog(logdir, run, **kwargs) as log:
        for step in steps:
            log.log_step(step, log_child.step_metrics(step))
            log.log_samples(step, log_child.sample_rows(step))
            log.log_tokens(step, log_child.token_rows(step))
    return logdir / run


def expected_frames(steps) -> dict[str, pd.DataFrame]:
    """The tables a run written by ``write_run`` must read as, built without the log package."""
    steps = list(steps)
    step_rows = pd.DataFrame([{"step": s, "rank": 0, **log_child.step_metrics(s)} for s in steps])
    samples = pd.concat([pd.DataFrame({"step": s, "rank": 0, **log_child.sample_rows(s)}) for s in steps])
    tokens = pd.concat([pd.DataFrame({"step": s, "rank": 0, **log_child.token_rows(s)}) for s in steps])
    return {"steps": step_rows, "samples": samples.reset_index(drop=True), "tokens": tokens.reset_index(drop=True)}


def assert_same_values(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(actual[list(expected.columns)], expected, check_dtype=False)


# -- finding runs ---------------------------------------------------------------------------------
def test_a_missing_run_folder_raises_run_not_found(tmp_path):
    with pytest.raises(RunNotFoundError, match="does not exist"):
        read_run(tmp_path / "nope")
    with pytest.raises(RunNotFoundError):
        list_runs(tmp_path / "nope")


def test_a_missing_or_corrupt_run_json_raises_log_format_error_naming_the_file(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(LogFormatError, match=str(tmp_path / "r" / "run.json")):
        read_run(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text('{"schema_version": 1, "run": ')
    with pytest.raises(LogFormatError, match="corrupt"):
        read_run(tmp_path / "r")


def test_list_runs_finds_nested_runs_sorted(tmp_path):
    for run in ["b", "a/x", "a/y", "z/deep/er"]:
        parent, name = (tmp_path / run).parent, (tmp_path / run).name
        RunLog(parent, name).close()
    (tmp_path / "not_a_run").mkdir()
    expected = sorted(tmp_path / run for run in ["b", "a/x", "a/y", "z/deep/er"])
    assert list_runs(tmp_path) == expected
    assert list_runs(tmp_path / "b") == [tmp_path / "b"]


# -- reading back ---------------------------------------------------------------------------------
def test_every_table_reads_back_exactly_what_was_logged(tmp_path):
    run = read_run(write_run(tmp_path, steps=range(6)))
    expected = expected_frames(range(6))
    for table in ("steps", "samples", "tokens"):
        assert_same_values(getattr(run, table), expected[table])
    assert run.name == "r" and run.meta["status"] == "closed"
    assert run.tokens["entropy"].dtype == np.float32


def test_an_empty_run_has_empty_tables_with_key_columns(tmp_path):
    RunLog(tmp_path, "r").close()
    run = read_run(tmp_path / "r")
    for frame in (run.steps, run.samples, run.tokens):
        assert frame.empty and list(frame.columns) == ["step", "rank"]


def test_chunks_that_gained_columns_or_widened_types_merge_with_nulls(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        log.log_step(0, {"a": 1.0})
        log.log_tokens(0, {"entropy": np.array([0.5], dtype=np.float32), "token_id": np.array([7], dtype=np.int32)})
        log.flush()
        log.log_step(1, {"a": 2.0, "b": 3.0})
        log.log_tokens(1, {"entropy": np.array([0.25]), "token_id": np.array([8]), "token_text": ["x"]})
    run = read_run(tmp_path / "r")
    np.testing.assert_array_equal(run.steps["b"], [np.nan, 3.0])
    assert run.tokens["entropy"].tolist() == [0.5, 0.25] and run.tokens["entropy"].dtype == np.float64
    assert run.tokens["token_id"].tolist() == [7, 8] and run.tokens["token_id"].dtype == np.int64
    assert run.tokens["token_text"].isna().tolist() == [True, False]


def test_a_column_whose_type_changed_between_chunks_still_reads(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        log.log_samples(0, {"answer": [42]})
        log.flush()
        log.log_samples(1, {"answer": ["forty-two"]})
    assert read_run(tmp_path / "r").samples["answer"].tolist() == [42, "forty-two"]


def test_a_step_relogged_by_a_restarted_writer_keeps_only_the_newest_rows(tmp_path):
    write_run(tmp_path, steps=range(5))
    with RunLog(tmp_path, "r") as log:  # resumed from a checkpoint at step 3
        for step in (3, 4, 5):
            log.log_step(step, {"entropy_mean": -1.0})
            log.log_samples(step, {"sample_id": [0], "reward": [-1.0]})
    run = read_run(tmp_path / "r")
    assert run.steps["step"].tolist() == [0, 1, 2, 3, 4, 5]
    assert run.steps["entropy_mean"].tolist()[3:] == [-1.0, -1.0, -1.0]
    assert run.steps["reward_mean"].isna().tolist() == [False, False, False, True, True, True]
    old = expected_frames(range(3))["samples"]
    assert_same_values(run.samples[run.samples["step"] < 3].reset_index(drop=True), old)
    assert run.samples[run.samples["step"] >= 3]["reward"].tolist() == [-1.0, -1.0, -1.0]
    # each table decides on its own: the restart logged no tokens, so the first run's stay
    assert_same_values(run.tokens, expected_frames(range(5))["tokens"])


def test_metrics_of_one_step_logged_in_separate_calls_merge_into_one_row(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        log.log_step(0, {"entropy_mean": 0.5, "reward_mean": 0.1})
        log.flush()
        log.log_step(0, {"eval_accuracy": 0.7})
        log.log_step(0, {"reward_mean": 0.2})
    steps = read_run(tmp_path / "r").steps
    assert len(steps) == 1
    assert (steps.loc[0, "entropy_mean"], steps.loc[0, "reward_mean"], steps.loc[0, "eval_accuracy"]) == (0.5, 0.2, 0.7)


# one call: (step, {metric: value}); one segment: the calls of one writer process
_calls = st.lists(st.tuples(st.integers(0, 4), st.dictionaries(st.sampled_from("abc"),
                                                               st.floats(-1e6, 1e6, allow_nan=False))),
                  min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(st.tuples(_calls, st.booleans()), min_size=1, max_size=3))
def test_steps_read_as_newest_segment_then_later_non_null_values_win(segments):
    expected: dict[int, dict] = {}
    for calls, _ in segments:
        in_segment: dict[int, dict] = {}
        for step, metrics in calls:
            in_segment.setdefault(step, {}).update(metrics)
        expected.update(in_segment)  # a step this segment logged replaces the older segment's row
    with tempfile.TemporaryDirectory() as logdir:
        for calls, flush_each in segments:
            with RunLog(logdir, "r", flush_interval_s=3600) as log:
                for step, metrics in calls:
                    log.log_step(step, metrics)
                    if flush_each:
                        log.flush()
        steps = read_run(Path(logdir) / "r").steps.set_index("step")
    assert sorted(steps.index) == sorted(expected)
    for step, metrics in expected.items():
        for name in "abc":
            value = steps.loc[step, name] if name in steps else np.nan
            assert (value == metrics[name]) if name in metrics else np.isnan(value)


# -- bad files ------------------------------------------------------------------------------------
def _valid_bytes(tmp_path: Path) -> bytes:
    write_run(tmp_path, "donor", steps=[99])
    return next((tmp_path / "donor" / "steps").glob("*.parquet")).read_bytes()


def _bad_file(kind: str, tmp_path: Path) -> bytes:
    good = _valid_bytes(tmp_path)
    if kind == "zero-byte":
        return b""
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "garbage":
        return os.urandom(500)
    if kind == "flipped-page":
        data = bytearray(good)
        for offset in range(8, 40):  # inside the first data page, after the 'PAR1' magic
            data[offset] ^= 0xFF
        return bytes(data)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"loss": [0.1, 0.2]}), sink)  # a Parquet file without entropymon's columns
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "garbage", "flipped-page", "foreign"])
def test_a_bad_chunk_is_warned_about_once_and_skipped(tmp_path, kind):
    run_path = write_run(tmp_path, steps=range(3))
    (run_path / "steps" / "rank-0.seg-7.chunk-0.parquet").write_bytes(_bad_file(kind, tmp_path))
    with pytest.warns(UserWarning, match="rank-0.seg-7.chunk-0.parquet: skipped") as caught:
        steps = read_run(run_path).steps
    assert len([w for w in caught if "seg-7" in str(w.message)]) == 1
    assert_same_values(steps, expected_frames(range(3))["steps"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_values(read_run(run_path).steps, expected_frames(range(3))["steps"])


def test_a_parquet_file_with_a_foreign_name_is_warned_about_and_skipped(tmp_path):
    run_path = write_run(tmp_path, steps=range(2))
    (run_path / "steps" / "export.parquet").write_bytes(_valid_bytes(tmp_path))
    (run_path / "steps" / "notes.txt").write_text("ignored quietly")
    with pytest.warns(UserWarning, match="export.parquet: skipped"):
        steps = read_run(run_path).steps
    assert steps["step"].tolist() == [0, 1]


def test_temporaries_are_never_read(tmp_path):
    run_path = write_run(tmp_path, steps=range(2))
    (run_path / "steps" / ".rank-0.seg-5.chunk-0.parquet.tmp").write_bytes(_valid_bytes(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_run(run_path).steps["step"].tolist() == [0, 1]


# -- caching and partial reads ---------------------------------------------------------------------
def _wide_run(logdir: Path) -> Path:
    """Three ranks of wide step rows (histograms, a float column appearing late, one restart)."""
    rng = np.random.default_rng(5)
    for rank in range(3):
        for segment_steps in (range(6), range(4, 9)) if rank == 1 else (range(9),):  # rank 1 restarts at 4
            with RunLog(logdir, "wide", rank=rank, flush_interval_s=3600) as log:
                for step in segment_steps:
                    row = {f"m{i}": float(rng.normal()) for i in range(12)}
                    row["stat/entropy_hist"] = [int(v) for v in rng.integers(0, 9, 5)]
                    if step >= 6:
                        row["late"] = float(step)
                    log.log_step(step, row)
                    log.log_samples(step, {"sample_id": np.arange(2), "reward": rng.normal(size=2)})
                    log.flush()  # a file per step
    return logdir / "wide"


def test_a_big_table_read_file_by_file_equals_the_cached_read_and_leaves_no_columns_cached(tmp_path, monkeypatch):
    from entropymon.log import view

    run_path = _wide_run(tmp_path)
    TABLE_CACHE.clear()
    cached = read_run(run_path)
    expected = (cached.steps, cached.step_metrics, cached.samples)
    monkeypatch.setattr(view, "STREAM_MIN_DISK_BYTES", 0)
    TABLE_CACHE.clear()
    streamed = read_run(run_path)
    got = (streamed.steps, streamed.step_metrics, streamed.samples)
    for frame, reference in zip(got, expected):
        pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    assert len(got[0]) == 27 and got[0]["late"].notna().sum() == 9  # 3 ranks x 9 steps; restart kept once
    # the steps files' columns were decoded into the frame and let go: only their keys stay cached
    for path in (run_path / "steps").glob("*.parquet"):
        held = TABLE_CACHE.read(path, [])
        assert held is not None and set(held.column_names) == {"step", "rank"}
        assert set(TABLE_CACHE._entries[str(path)].columns) == {"step", "rank"}


def test_a_live_refresh_after_a_file_by_file_read_appends_only_the_new_rows(tmp_path, monkeypatch):
    from entropymon.log import view

    monkeypatch.setattr(view, "STREAM_MIN_DISK_BYTES", 0)
    run_path = _wide_run(tmp_path)
    run = read_run(run_path)
    before = (run.steps, run.step_metrics)
    rng = np.random.default_rng(9)
    for rank in range(3):  # step 9 from every rank, then a refresh
        with RunLog(tmp_path, "wide", rank=rank, flush_interval_s=3600) as log:
            row = {f"m{i}": float(rng.normal()) for i in range(12)}
            log.log_step(9, {**row, "stat/entropy_hist": [1, 2, 3, 4, 5], "late": 9.0})
    run.refresh()
    steps, metrics = run.steps, run.step_metrics
    assert run._views["steps"].full_reads == 1  # the new rows were appended, not read again with the rest
    assert steps["step"].tolist()[-3:] == [9, 9, 9] and len(steps) == len(before[0]) + 3
    pd.testing.assert_frame_equal(steps.iloc[:len(before[0])], before[0], check_exact=True)
    monkeypatch.setattr(view, "STREAM_MIN_DISK_BYTES", 1 << 60)
    TABLE_CACHE.clear()
    fresh = read_run(run_path)  # the whole table resolved again through the file cache
    pd.testing.assert_frame_equal(steps, fresh.steps, check_exact=True)
    pd.testing.assert_frame_equal(metrics, fresh.step_metrics, check_exact=True)


def _family_run(logdir: Path, ranks: int = 3, steps: int = 4, extra_rank0_step: bool = False,
                close: bool = True, sparse_dh: bool = False) -> tuple[Path, list]:
    """A run of ``ranks`` writers logging real stats of every family at every step (the rows of
    test_metrics_stats._complete_rank_rows); rank 0 logs one step more when ``extra_rank0_step``;
    the dH probe's columns only at even steps when ``sparse_dh`` (a probe every N steps).
    Returns (its path, the writers left open when not ``close``)."""
    from test_metrics_stats import _complete_rank_rows

    frame = _complete_rank_rows(8, steps + 1, ranks)
    logs = []
    for rank in range(ranks):
        log = RunLog(logdir, "families", rank=rank, flush_interval_s=3600)
        for row in frame[frame["rank"] == rank].to_dict("records"):
            step = row.pop("step")
            row.pop("rank")
            if sparse_dh and step % 2:
                row = {k: v for k, v in row.items() if not k.startswith(("stat/dh_", "dh_"))}
            if step < steps or (extra_rank0_step and rank == 0):
                log.log_step(step, row)
        log.flush()
        if close:
            log.close()
        else:
            logs.append(log)
    return logdir / "families", logs


def _full_read_step_metrics(run_path: Path) -> pd.DataFrame:
    from entropymon.metrics.stats import combine_ranks

    TABLE_CACHE.clear()
    return combine_ranks(read_run(run_path).steps)


def test_step_metrics_of_a_finished_big_run_come_from_the_steps_read_without_the_family_metrics(tmp_path, monkeypatch):
    from entropymon.log import view

    run_path, _ = _family_run(tmp_path)
    expected = _full_read_step_metrics(run_path)
    monkeypatch.setattr(view, "STREAM_MIN_DISK_BYTES", 0)  # the test run counts as big
    TABLE_CACHE.clear()
    run = read_run(run_path)
    got = run.step_metrics
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert run._views["steps"].frame is None  # the per-rank table itself was never built
    reads = TABLE_CACHE.reads
    assert run.refresh().step_metrics is got and TABLE_CACHE.reads == reads  # nothing new: nothing read
    assert len(run.steps) == 12 and run.steps.columns.equals(read_run(run_path).steps.columns)


def test_step_metrics_recombine_one_rank_steps_from_full_rows_and_follow_a_live_run(tmp_path, monkeypatch):
    from test_metrics_stats import _complete_rank_rows

    from entropymon.log import view

    monkeypatch.setattr(view, "STREAM_MIN_DISK_BYTES", 0)
    one_rank_step, _ = _family_run(tmp_path / "a", extra_rank0_step=True)  # step 4 from rank 0 only
    live, writers = _family_run(tmp_path / "b", close=False)
    try:
        for run_path in (one_rank_step, live):
            expected = _full_read_step_metrics(run_path)
            TABLE_CACHE.clear()
            run = read_run(run_path)
            pd.testing.assert_frame_equal(run.step_metrics, expected, check_exact=True)
            assert run._views["steps"].frame is None
        assert read_run(one_rank_step).step_metrics["n_ranks"].tolist() == [3, 3, 3, 3, 1]
        # the live run grows by a step that only two ranks have logged yet: appended, not read again
        rows = _complete_rank_rows(8, 5, 3)
        for log in writers[:2]:
            row = rows[(rows["step"] == 4) & (rows["rank"] == log.rank)].iloc[0].to_dict()
            log.log_step(4, {k: v for k, v in row.items() if k not in ("step", "rank")})
            log.flush()
        assert len(run.step_metrics) == 4  # as every table: what was read, until refresh()
        run.refresh()
        pd.testing.assert_frame_equal(run.step_metrics, _full_read_step_metrics(live), check_exact=True)
        assert run._trimmed_view.full_reads == 1 and run.step_metrics["n_ranks"].tolist()[-1] == 2
    finally:
        for log in writers:
            log.close()


def test_step_metrics_read_a_sparse_familys_metrics_and_take_the_full_table_where_trimming_does_not_pay(
        tmp_path, monkeypatch):
    from entropymon.log import view

    monkeypatch.setattr(view, "STREAM_MIN_DISK_BYTES", 0)
    sparse, _ = _family_run(tmp_path / "sparse", sparse_dh=True)
    one_rank, _ = _family_run(tmp_path / "one", ranks=1)
    partial, _ = _family_run(tmp_path / "partial", extra_rank0_step=True)
    expected = {path: _full_read_step_metrics(path) for path in (sparse, one_rank, partial)}
    TABLE_CACHE.clear()
    run = read_run(sparse)
    pd.testing.assert_frame_equal(run.step_metrics, expected[sparse], check_exact=True)
    excluded = run._trimmed_view.exclude
    assert "entropy_mean" in excluded and "dh_same_batch" not in excluded  # the probe's metrics are read
    run = read_run(one_rank)  # one rank: every step is kept as logged
    pd.testing.assert_frame_equal(run.step_metrics, expected[one_rank], check_exact=True)
    assert run._trimmed_view is None and run._views["steps"].frame is not None
    monkeypatch.setattr(reader, "REDO_MIN_STEPS", 0)
    monkeypatch.setattr(reader, "REDO_SHARE", 0.0)
    run = read_run(partial)  # its one-rank step is more than the (patched) share worth combining again
    pd.testing.assert_frame_equal(run.step_metrics, expected[partial], check_exact=True)
    assert run._trimmed_view is None and run._trim_refused and run._views["steps"].frame is not None


def test_a_second_read_of_an_unchanged_run_opens_no_file_and_new_chunks_cost_one_read_each(tmp_path):
    run_path = write_run(tmp_path, steps=range(3))
    first = read_run(run_path)
    before = TABLE_CACHE.reads
    frames = (first.steps, first.samples, first.tokens)
    assert TABLE_CACHE.reads - before == 3  # one chunk per table
    before = TABLE_CACHE.reads
    again = read_run(run_path)
    pd.testing.assert_frame_equal(again.steps, frames[0])
    pd.testing.assert_frame_equal(again.tokens, frames[2])
    assert TABLE_CACHE.reads == before
    with RunLog(tmp_path, "r") as log:
        log.log_step(3, log_child.step_metrics(3))
    before = TABLE_CACHE.reads
    assert first.refresh().steps["step"].tolist() == [0, 1, 2, 3]
    assert TABLE_CACHE.reads - before == 1


def test_read_table_returns_only_the_asked_columns_and_steps(tmp_path):
    run_path = tmp_path / "r"
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        for step in range(10):
            log.log_tokens(step, log_child.token_rows(step))
            if step % 3 == 2:
                log.flush()  # several chunks with different step ranges
    everything = read_run(run_path).tokens
    for steps, members in [(4, [4]), (range(2, 6), [2, 3, 4, 5]), ([9, 0, 9], [0, 9]), ([], [])]:
        part = read_table(run_path, "tokens", columns=["entropy"], steps=steps)
        assert list(part.columns) == ["step", "rank", "entropy"]
        expected = everything[everything["step"].isin(members)][["step", "rank", "entropy"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, expected, check_dtype=False)
    assert list(read_table(run_path, "tokens", columns="position").columns) == ["step", "rank", "position"]
    with pytest.raises(InputError, match="table: expected one of"):
        read_table(run_path, "metrics")
    with pytest.raises(InputError, match="steps: expected"):
        read_table(run_path, "tokens", steps=["x"])


def test_table_steps_are_the_steps_a_full_read_holds(tmp_path):
    """table_steps skips resolving rows: a restarted writer re-doing steps, a second rank with steps
    of its own and an empty table give the steps read_table gives."""
    write_run(tmp_path, steps=range(5))
    with RunLog(tmp_path, "r") as log:  # resumed at step 3, going further
        for step in (3, 4, 7):
            log.log_samples(step, {"sample_id": [0], "reward": [-1.0]})
    with RunLog(tmp_path, "r", rank=1) as log:
        for step in (2, 9):
            log.log_samples(step, {"sample_id": [0], "reward": [1.0]})
    run_path = tmp_path / "r"
    for table in ("steps", "samples", "tokens"):
        steps = table_steps(run_path, table)
        assert steps.dtype == np.int64
        assert steps.tolist() == sorted(set(read_table(run_path, table)["step"].tolist())), table
    assert table_steps(run_path, "samples").tolist() == [0, 1, 2, 3, 4, 7, 9]
    empty = tmp_path / "e"
    with RunLog(tmp_path, "e"):
        pass
    assert table_steps(empty, "tokens").tolist() == []
    with pytest.raises(InputError, match="table: expected one of"):
        table_steps(run_path, "metrics")
    # a file's steps out of order (a step revisited) take NumPy's unique
    for values in ([3, 1, 3, 2], [1, 1, 2, 5], [], [4]):
        assert reader._distinct(np.array(values, dtype=np.int64)).tolist() == sorted(set(values))


def test_a_chunk_spanning_many_steps_is_cut_into_row_groups_and_a_step_read_decodes_only_its_group(
        tmp_path, monkeypatch):
    """One chunk holding every step (a rank flushing once) gets row groups of at most
    STEPS_PER_ROW_GROUP steps; a step-filtered read gives what filtering the full read gives, while
    decoding only the groups that may hold the step (the file is not decoded whole into the cache)."""
    monkeypatch.setattr(durable, "STEPS_PER_ROW_GROUP", 10)
    monkeypatch.setattr(durable, "MIN_ROW_GROUP_ROWS", 8)
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        for step in range(100):
            log.log_samples(step, log_child.sample_rows(step))
    run_path = tmp_path / "r"
    (path,) = sorted((run_path / "samples").glob("*.parquet"))
    metadata = pq.ParquetFile(path).metadata
    spans = [(metadata.row_group(i).column(0).statistics.min, metadata.row_group(i).column(0).statistics.max)
             for i in range(metadata.num_row_groups)]
    assert metadata.num_row_groups == 10 and all(high - low < 10 for low, high in spans)
    assert spans[0][0] == 0 and spans[-1][1] == 99
    TABLE_CACHE.clear()
    part = read_table(run_path, "samples", steps=[37, 38])
    # the footer and the keys only: the groups were read, not the file's other columns
    assert set(TABLE_CACHE._entries[str(path)].columns) <= {"step", "rank"}
    everything = read_run(run_path).samples
    expected = everything[everything["step"].isin([37, 38])].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)
    for steps in (0, 99, range(5, 25), [], [3, 97]):  # the file is cached whole now: the same answers
        part = read_table(run_path, "samples", steps=steps)
        members = list(steps) if not isinstance(steps, int) else [steps]
        pd.testing.assert_frame_equal(part, everything[everything["step"].isin(members)].reset_index(drop=True))


def test_a_chunk_spanning_few_steps_stays_one_row_group(tmp_path):
    """The writer's throughput path (1M token rows of a few hundred steps) writes one group, as before."""
    table = pa.table({"step": np.repeat(np.arange(200), 50), "value": np.arange(10_000, dtype=np.float64)})
    assert durable.row_group_bounds(table) == [0, 10_000]
    durable.write_parquet_temp(table, tmp_path / "t.parquet")
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups == 1
    wide = pa.table({"step": np.arange(20_000)})
    bounds = durable.row_group_bounds(wide)
    assert bounds[0] == 0 and bounds[-1] == 20_000 and len(bounds) > 2
    assert all(stop - start >= durable.MIN_ROW_GROUP_ROWS for start, stop in zip(bounds[:-1], bounds[1:]))
    durable.write_parquet_temp(wide, tmp_path / "w.parquet")
    assert pq.read_table(tmp_path / "w.parquet").equals(wide)


# -- live runs ------------------------------------------------------------------------------------
def test_is_live_follows_the_status_and_the_heartbeat(tmp_path):
    log = RunLog(tmp_path, "r")
    run = read_run(tmp_path / "r")
    assert run.is_live
    beat = tmp_path / "r" / "rank-0.heartbeat"
    os.utime(beat, (time.time() - 120, time.time() - 120))
    assert not run.is_live  # a writer that stopped beating is dead or hung
    os.utime(beat)
    assert run.is_live
    log.close()
    assert not run.is_live


def test_the_reader_polling_a_writing_process_sees_growing_whole_steps_and_no_errors(tmp_path):
    child = subprocess.Popen([sys.executable, str(CHILD), "write", str(tmp_path), "live", "0", "150"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    seen: set[int] = set()
    polls = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        while True:
            finished = child.poll() is not None
            run = read_run(tmp_path / "live")
            steps = set(run.steps["step"])
            assert steps >= seen
            counts = run.samples.groupby("step").size()
            assert (counts == log_child.SAMPLES_PER_STEP).all()  # never a partial chunk
            seen, polls = steps, polls + 1
            if finished:
                break
    assert child.returncode == 0, child.stderr.read()
    assert seen == set(range(150)) and polls > 3


def test_step_metrics_of_a_single_rank_run_are_its_steps(tmp_path):
    stats = pytest.importorskip("entropymon.metrics.stats")
    if not hasattr(stats, "combine_ranks"):
        pytest.skip("entropymon.metrics.stats.combine_ranks is not there yet")
    run = read_run(write_run(tmp_path, steps=range(4)))
    combined = run.step_metrics
    assert combined["step"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(combined["entropy_mean"], [s / 7.0 for s in range(4)])


def test_files_lists_the_chunks_of_every_table(tmp_path):
    run = read_run(write_run(tmp_path, steps=range(2)))
    assert sorted(p.parent.name for p in run.files) == ["samples", "steps", "tokens"]
    assert json.loads((run.path / "run.json").read_text())["run"] == "r"


def test_the_file_cache_keeps_its_byte_count_and_evicts_the_least_recently_read_files(tmp_path):
    with RunLog(tmp_path, "r") as log:
        for step in range(4):
            log.log_step(step, log_child.step_metrics(step))
            log.flush()
    paths = sorted((tmp_path / "r" / "steps").glob("*.parquet"))
    assert len(paths) == 4
    tables = [pq.read_table(path) for path in paths]
    roomy = FileTableCache()
    for path, table in zip(paths, tables):
        assert roomy.read(path).equals(table)
    assert roomy._bytes == sum(table.nbytes for table in tables)  # counted as files are added, not re-summed
    opens = roomy.reads
    assert all(roomy.read(path).equals(table) for path, table in zip(paths, tables)) and roomy.reads == opens
    tight = FileTableCache(max_bytes=2 * max(table.nbytes for table in tables))
    tight.preload(paths)
    assert tight._bytes <= tight.max_bytes and tight._bytes == sum(e.nbytes for e in tight._entries.values())
    opens = tight.reads
    assert tight.read(paths[-1]).equals(tables[-1]) and tight.reads == opens  # the newest stayed
    assert tight.read(paths[0]).equals(tables[0]) and tight.reads == opens + 1  # the oldest was evicted


def test_preloading_some_columns_keeps_the_columns_a_file_held_and_reads_the_rest_in_parallel(tmp_path):
    """A step-filtered or column-projected read decodes its files several at a time (preload with
    columns); what a file's entry held already stays, and nothing is decoded twice."""
    with RunLog(tmp_path, "r") as log:
        for step in range(3):
            log.log_samples(step, {"sample_id": [0, 1], "reward": [0.5, 1.0], "text": ["a", "b"]})
            log.flush()
    paths = sorted((tmp_path / "r" / "samples").glob("*.parquet"))
    cache = FileTableCache()
    assert cache.read(paths[0], ["text"]).column_names == ["step", "rank", "text"]
    cache.preload(paths, ["reward"])
    opens = cache.reads
    for path in paths:
        assert cache.read(path, ["reward"]).column("reward").to_pylist() == [0.5, 1.0]
    assert cache.read(paths[0], ["text", "reward"]).column("text").to_pylist() == ["a", "b"]
    assert cache.reads == opens  # the first file kept its text column next to the preloaded reward
    assert cache._bytes == sum(e.nbytes for e in cache._entries.values())
    assert cache.read(paths[1], ["text"]) is not None and cache.reads == opens + 1  # not preloaded


def test_preloading_and_reading_all_columns_but_some_open_each_file_once_and_keep_the_keys(tmp_path):
    """``exclude`` is judged from each file's own footer (a live refresh reads every new file's
    columns but the left-out ones without first reading the new footers one by one)."""
    with RunLog(tmp_path, "r") as log:
        for step in range(3):
            log.log_step(step, {"a": step * 1.0, "b": -step * 1.0, **({"c": 7.0} if step == 2 else {})})
            log.flush()
    paths = sorted((tmp_path / "r" / "steps").glob("*.parquet"))
    cache = FileTableCache()
    cache.preload(paths, exclude=frozenset({"b", "step"}))
    assert cache.reads == len(paths)
    for step, path in enumerate(paths):
        expected = pq.read_table(path).drop_columns(["b"])
        assert cache.read(path, exclude=frozenset({"b", "step"})).equals(expected), step
    assert cache.reads == len(paths)  # all from the preload, the keys included
    assert cache.read(paths[2], ["c", "b"], exclude=frozenset({"c"})).column_names == ["step", "rank", "b"]


def _read_steps_in_child(run_path: str, queue) -> None:
    TABLE_CACHE.clear()
    queue.put(read_run(run_path).steps["step"].tolist())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork start method only")
def test_a_forked_child_reads_with_threads_of_its_own(tmp_path):
    """The cache's reading threads live as long as the process: a forked child (a DataLoader
    worker) must not wait on the parent's threads, which it does not have."""
    import multiprocessing

    with RunLog(tmp_path, "r") as log:
        for step in range(3):
            log.log_step(step, log_child.step_metrics(step))
            log.flush()
    TABLE_CACHE.clear()
    assert read_run(tmp_path / "r").steps["step"].tolist() == [0, 1, 2]  # the parent's pool is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_steps_in_child, args=(str(tmp_path / "r"), queue))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running: that is the case tested
        child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [0, 1, 2]
