"""RunLog: names, run.json, column types, queueing and dropping, error handling, segments."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from entropymon.errors import InputError
from entropymon.log import meta
from entropymon.log.writer import RunLog


def chunk_files(run_path: Path, table: str) -> list[Path]:
    return sorted((run_path / table).glob("rank-*.parquet"))


def read_chunks(run_path: Path, table: str) -> pd.DataFrame:
    files = chunk_files(run_path, table)
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def stall(log: RunLog) -> tuple[threading.Event, threading.Event]:
    """Make the writer thread block on the next item it takes; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    handle = log._worker.handle

    def blocking_handle(item):
        entered.set()
        release.wait()
        handle(item)

    log._worker.handle = blocking_handle
    return entered, release


# -- names and run.json ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "  ", ".", "..", "a/b", "a\\b", "x\ny", 3])
def test_run_names_that_are_not_one_plain_folder_name_are_refused(tmp_path, bad):
    with pytest.raises(InputError, match="run: expected"):
        RunLog(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


def test_generated_run_names_are_unique_and_carry_the_short_host(tmp_path):
    logs = [RunLog(tmp_path) for _ in range(3)]
    for log in logs:
        log.close()
    names = [log.run for log in logs]
    assert len(set(names)) == 3
    host = socket.gethostname().split(".")[0]
    assert all(host in name for name in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_ranks_above_zero_need_the_run_name_rank_zero_uses(tmp_path):
    with pytest.raises(InputError, match="rank=1 a run name is required"):
        RunLog(tmp_path, rank=1)


def test_run_json_says_running_while_open_and_closed_after_close(tmp_path):
    log = RunLog(tmp_path, "r", config={"lr": 1e-6, "model": "tiny"})
    running = json.loads((tmp_path / "r" / "run.json").read_text())
    assert running["status"] == "running"
    assert running["run"] == "r"
    assert running["config"] == {"lr": 1e-6, "model": "tiny"}
    assert running["pid"] == os.getpid()
    assert running["host"] == socket.gethostname()
    assert running["schema_version"] == 1
    assert running["rank"] == 0
    assert running["entropymon_version"]
    log.close()
    closed = json.loads((tmp_path / "r" / "run.json").read_text())
    assert closed["status"] == "closed"
    assert closed["started_at"] == running["started_at"]
    assert closed["ended_at"] >= closed["started_at"]  # ISO strings of one time zone sort in time order
    assert not (tmp_path / "r" / ".run.json.tmp").exists()


@dataclasses.dataclass
class _Args:
    lr: float
    where: Path


def test_config_values_json_cannot_hold_are_stored_as_str_with_a_warning(tmp_path):
    opaque = object()
    config = {"args": _Args(0.5, Path("/data")), "scale": np.float32(1.5), "opaque": opaque, "tags": ("a", 1)}
    with pytest.warns(UserWarning, match="opaque"):
        with RunLog(tmp_path, "r", config=config):
            pass
    stored = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    assert stored == {"args": {"lr": 0.5, "where": "/data"}, "scale": 1.5, "opaque": str(opaque), "tags": ["a", 1]}


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(InputError, match="config: expected a mapping"):
        RunLog(tmp_path, "r", config=[1, 2])


def test_bad_arguments_raise_input_error_naming_the_argument(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="logdir: expected a folder"):
        RunLog(tmp_path / "file", "r")
    for kwargs, name in [({"rank": -1}, "rank"), ({"queue_size": 0}, "queue_size"),
                         ({"flush_interval_s": 0}, "flush_interval_s"), ({"chunk_rows": 1.5}, "chunk_rows")]:
        with pytest.raises(InputError, match=f"{name}: expected"):
            RunLog(tmp_path, "r", **kwargs)
    with RunLog(tmp_path, "r") as log:
        with pytest.raises(InputError, match=r"step: expected an integer >= 0 and < 2\*\*63, got int -1"):
            log.log_step(-1, {})
        with pytest.raises(InputError, match=r"step: expected an integer >= 0 and < 2\*\*63, got int 9223372036854775808"):
            log.log_step(2**63, {})
        with pytest.raises(InputError, match="step: expected"):
            log.log_step("3", {})
        with pytest.raises(InputError, match="metrics: expected a dict"):
            log.log_step(1, [0.5])
        with pytest.raises(InputError, match="rows: expected"):
            log.log_samples(1, None)


# -- columns --------------------------------------------------------------------------------------
def test_step_columns_have_the_documented_types(tmp_path):
    with RunLog(tmp_path, "r") as log:
        log.log_step(np.int64(3), {"entropy_mean": 0.25, "n_tokens": 7, "entropy_hist": np.array([1, 2, 3]),
                                   "trl/run_name": "abc", "lr": np.float32(0.5), "dropped_rows": True})
    schema = pq.read_schema(chunk_files(tmp_path / "r", "steps")[0])
    assert schema.field("step").type == pa.int64()
    assert schema.field("rank").type == pa.int32()
    assert schema.field("time").type == pa.float64()
    assert schema.field("entropy_hist").type == pa.list_(pa.int64())
    assert schema.field("trl/run_name").type == pa.string()
    for name in ("entropy_mean", "n_tokens", "lr", "dropped_rows"):
        assert schema.field(name).type == pa.float64(), name
    row = read_chunks(tmp_path / "r", "steps").iloc[0]
    assert (row["step"], row["n_tokens"], row["lr"], row["dropped_rows"]) == (3, 7.0, 0.5, 1.0)
    assert list(row["entropy_hist"]) == [1, 2, 3]


def test_step_rows_with_different_keys_share_one_chunk_with_missing_values_null(tmp_path):
    before = time.time()
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        log.log_step(0, {"a": 1.0})
        log.log_step(1, {"b": 2.0})
        log.log_step(2, {"a": 3.0, "c": "x"})
    assert len(chunk_files(tmp_path / "r", "steps")) == 1
    frame = read_chunks(tmp_path / "r", "steps")
    assert list(frame.columns) == ["step", "rank", "time", "a", "b", "c"]
    np.testing.assert_array_equal(frame["a"], [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(frame["b"], [np.nan, 2.0, np.nan])
    assert frame["c"].isna().tolist() == [True, True, False]
    assert ((frame["time"] >= before) & (frame["time"] <= time.time())).all()


def test_samples_as_columns_rows_or_dataframe_are_stored_alike(tmp_path):
    columns = {"sample_id": np.arange(3), "reward": np.array([1.0, 0.0, 0.5]), "text": ["a", "b", "c"]}
    as_rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    for run, rows in [("columns", columns), ("rows", as_rows), ("frame", pd.DataFrame(columns))]:
        with RunLog(tmp_path, run) as log:
            log.log_samples(7, rows)
    frames = [read_chunks(tmp_path / run, "samples") for run in ("columns", "rows", "frame")]
    expected = pd.DataFrame({"step": np.full(3, 7, dtype=np.int64), "rank": np.zeros(3, dtype=np.int32), **columns})
    for frame in frames:
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
        assert frame["step"].dtype == np.int64 and frame["rank"].dtype == np.int32


def test_token_columns_keep_their_dtype_and_scalars_are_broadcast(tmp_path):
    entropy = np.random.default_rng(0).random(5, dtype=np.float32)
    with RunLog(tmp_path, "r") as log:
        log.log_tokens(2, {"entropy": entropy, "sample_id": 4, "position": np.arange(5, dtype=np.int32)})
    table = pq.read_table(chunk_files(tmp_path / "r", "tokens")[0])
    assert table.schema.field("entropy").type == pa.float32()
    assert table.schema.field("position").type == pa.int32()
    np.testing.assert_array_equal(table.column("entropy").to_numpy(), entropy)
    assert table.column("sample_id").to_pylist() == [4] * 5
    assert table.column("step").to_pylist() == [2] * 5


def test_token_chunks_read_back_bit_for_bit_with_the_writers_parquet_options(tmp_path):
    # the options chosen for speed in durable.py (LZ4, dictionary and min/max statistics on the
    # key columns only, page checksums) must still give back exactly what was logged
    rng = np.random.default_rng(1)
    rows = 3 * 4096
    special = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(np.float32).tiny, np.finfo(np.float32).max],
                       dtype=np.float32)
    columns = {
        "sample_id": np.repeat(np.arange(rows // 512, dtype=np.int32), 512),
        "position": np.tile(np.arange(512, dtype=np.int32), rows // 512),
        "token_id": rng.integers(np.iinfo(np.int32).min, np.iinfo(np.int32).max, rows, dtype=np.int32),
        "entropy": np.concatenate([special, rng.gamma(0.5, 1.0, rows - special.size).astype(np.float32)]),
        "logprob": -rng.exponential(0.5, rows).astype(np.float32),
    }
    with RunLog(tmp_path, "r") as log:
        for step in range(3):
            log.log_tokens(step, {name: values[step * 4096:(step + 1) * 4096] for name, values in columns.items()})
    [path] = chunk_files(tmp_path / "r", "tokens")
    table = pq.read_table(path, page_checksum_verification=True)
    assert table.column("step").to_pylist() == [0] * 4096 + [1] * 4096 + [2] * 4096
    for name, values in columns.items():
        stored = table.column(name).to_numpy()
        assert stored.dtype == values.dtype and stored.tobytes() == values.tobytes(), name
    group = pq.ParquetFile(path).metadata.row_group(0)
    by_name = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert {column.compression for column in by_name.values()} == {"LZ4"}  # pyarrow's name for LZ4_RAW
    assert (by_name["step"].statistics.min, by_name["step"].statistics.max) == (0, 2)
    assert by_name["rank"].is_stats_set and not by_name["entropy"].is_stats_set


def test_torch_tensors_are_converted_on_the_writer_thread(tmp_path):
    torch = pytest.importorskip("torch")
    values = torch.tensor([0.5, 1.25, 2.0], dtype=torch.bfloat16)
    with RunLog(tmp_path, "r") as log:
        log.log_tokens(0, {"entropy": values, "token_id": torch.arange(3)})
        log.log_step(0, {"entropy_mean": torch.tensor(0.75), "entropy_hist": torch.tensor([4, 5])})
    tokens = read_chunks(tmp_path / "r", "tokens")
    np.testing.assert_array_equal(tokens["entropy"], values.float().numpy())
    np.testing.assert_array_equal(tokens["token_id"], [0, 1, 2])
    steps = read_chunks(tmp_path / "r", "steps")
    assert steps["entropy_mean"].tolist() == [0.75]
    assert list(steps["entropy_hist"][0]) == [4, 5]


def test_the_writer_never_imports_torch(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from entropymon.log.writer import RunLog\n"
        "from entropymon.log.reader import read_run\n"
        f"with RunLog({str(tmp_path)!r}, 'r') as log:\n"
        "    log.log_step(0, {'entropy_mean': 0.5}); log.log_tokens(0, {'entropy': np.ones(3)})\n"
        f"read_run({str(tmp_path / 'r')!r}).tokens\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- queue, errors ---------------------------------------------------------------------------------
def test_a_full_queue_drops_and_counts_rows_and_the_next_step_row_reports_them(tmp_path):
    log = RunLog(tmp_path, "r", queue_size=4, flush_interval_s=3600)
    entered, release = stall(log)
    log.log_step(0, {"x": 0.0})
    assert entered.wait(10)  # the writer holds step 0 and takes nothing more
    for step in range(1, 5):
        log.log_step(step, {"x": float(step)})  # fills the queue
    assert log.dropped_rows == 0
    log.log_step(5, {"x": 5.0})
    log.log_samples(5, {"reward": np.zeros(6)})
    log.log_tokens(5, [{"entropy": 1.0}, {"entropy": 2.0}])
    assert log.dropped_rows == 1 + 6 + 2
    release.set()
    assert log.flush(timeout=10)
    log.log_step(6, {"x": 6.0})
    log.close()
    steps = read_chunks(tmp_path / "r", "steps").set_index("step")
    assert sorted(steps.index) == [0, 1, 2, 3, 4, 6]
    assert steps.loc[6, "dropped_rows"] == 9.0
    assert steps.loc[:4, "dropped_rows"].isna().all()
    assert chunk_files(tmp_path / "r", "samples") == []


def test_rows_that_cannot_be_stored_are_counted_and_the_writer_goes_on(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="entropymon.log"):
        with RunLog(tmp_path, "r") as log:
            log.log_samples(0, {"reward": np.zeros(3), "length": np.zeros(2)})
            log.log_samples(1, {"reward": np.ones(2)})
            log.log_step(0, {"bad": object(), "good": 0.5})
            log.log_step(1, {"good": 1.0})
            assert log.flush(timeout=10)
            assert log.errors == 2
    assert "column 'length' has 2 rows, expected 3 like column 'reward'" in caplog.text
    assert "left out 1 step metric value(s)" in caplog.text
    assert read_chunks(tmp_path / "r", "samples")["step"].tolist() == [1, 1]
    steps = read_chunks(tmp_path / "r", "steps")
    assert steps["step"].tolist() == [0, 1] and steps["good"].tolist() == [0.5, 1.0]
    assert steps["bad"].isna().all()  # only the odd value is left out, not its row


@pytest.mark.parametrize("odd", ["abc", [1.0, 2.0], {"a": 1}, float("inf")], ids=["str", "list", "dict", "inf"])
def test_one_odd_value_in_a_flush_costs_that_value_only_and_is_counted(tmp_path, odd):
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        for step in range(6):
            log.log_step(step, {"x": float(step), "y": odd if step == 2 else step * 10.0})
        assert log.flush(timeout=10)
        expected_errors = 0 if odd == float("inf") else 1  # inf is a number: stored as it is
        assert log.errors == expected_errors
    steps = read_chunks(tmp_path / "r", "steps")
    assert steps["step"].tolist() == list(range(6))
    assert steps["x"].tolist() == [float(s) for s in range(6)]
    y = steps["y"].tolist()
    assert [v for i, v in enumerate(y) if i != 2] == [s * 10.0 for s in range(6) if s != 2]
    assert y[2] == odd if odd == float("inf") else np.isnan(y[2])


def test_one_element_arrays_and_tensors_are_stored_as_their_number(tmp_path):
    torch = pytest.importorskip("torch")
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        log.log_step(0, {"x": torch.tensor([0.25]), "y": np.array([3])})
        log.log_step(1, {"x": 0.5, "y": 4.0})
        assert log.flush(timeout=10) and log.errors == 0
    steps = read_chunks(tmp_path / "r", "steps")
    assert steps["x"].tolist() == [0.25, 0.5] and steps["y"].tolist() == [3.0, 4.0]


def test_text_with_lone_surrogates_is_kept_repaired_and_counted(tmp_path):
    with RunLog(tmp_path, "r") as log:
        log.log_samples(0, {"sample_id": [0, 1, 2], "text": ["fine", "bad \ud800 half", "also fine"]})
        assert log.flush(timeout=10)
        assert log.errors == 1
    samples = read_chunks(tmp_path / "r", "samples")
    assert samples["text"].tolist() == ["fine", "bad \ufffd half", "also fine"]
    assert samples["sample_id"].tolist() == [0, 1, 2]


def test_strict_mode_raises_the_writer_error_at_the_next_call(tmp_path):
    log = RunLog(tmp_path, "r", strict=True)
    log.log_samples(0, {"reward": np.zeros(3), "length": np.zeros(2)})
    with pytest.raises(InputError, match="column 'length' has 2 rows"):
        log.flush(timeout=10)
    log.close()


def test_repeated_write_failures_are_counted_logged_once_and_the_writer_recovers(tmp_path, caplog):
    seen = []
    log = RunLog(tmp_path, "r", max_consecutive_errors=3, flush_interval_s=3600, on_error=seen.append)
    steps = tmp_path / "r" / "steps"
    shutil.rmtree(steps)
    steps.write_text("a file where the steps folder was")
    with caplog.at_level(logging.WARNING, logger="entropymon.log"):
        log.log_step(0, {"x": 1.0})
        results = [log.flush(timeout=10) for _ in range(3)]
        assert log.failing
        log.log_step(1, {"x": 2.0})  # kept in memory while writes fail, not dropped
        assert log.flush(timeout=10) is False
        assert results == [False, False, False]
        assert log.errors == 4 and len(seen) == 4 and all(isinstance(e, OSError) for e in seen)
        steps.unlink()  # the disk recovers
        steps.mkdir()
        assert log.flush(timeout=10) is True
        assert not log.failing
    assert "could not write a steps chunk" in caplog.text and "3 failed writes in a row" in caplog.text
    assert "works again after 4 failed writes" in caplog.text
    # rate limiting: one message for the first failure, the others suppressed
    assert len([r for r in caplog.records if "could not write" in r.getMessage()]) == 1
    log.close()
    assert read_chunks(tmp_path / "r", "steps")["x"].tolist() == [1.0, 2.0]
    assert log.dropped_rows == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "closed"


def test_rows_waiting_beyond_max_pending_rows_while_writes_fail_are_dropped_and_counted(tmp_path):
    log = RunLog(tmp_path, "r", max_consecutive_errors=1, flush_interval_s=3600, chunk_rows=10, max_pending_rows=20)
    tokens = tmp_path / "r" / "tokens"
    shutil.rmtree(tokens)
    tokens.write_text("blocking file")
    for step in range(6):
        log.log_tokens(step, {"entropy": np.full(10, float(step))})
    assert log.flush(timeout=10) is False
    assert log.dropped_rows == 40  # 60 rows logged, the newest 20 kept
    tokens.unlink()
    tokens.mkdir()
    log.close()
    assert read_chunks(tmp_path / "r", "tokens")["step"].tolist() == [4] * 10 + [5] * 10


def test_a_failed_write_is_retried_at_the_next_flush(tmp_path):
    log = RunLog(tmp_path, "r", flush_interval_s=3600)
    steps = tmp_path / "r" / "steps"
    shutil.rmtree(steps)
    steps.write_text("blocking file")
    log.log_step(0, {"x": 1.0})
    assert log.flush(timeout=10) is False
    steps.unlink()
    steps.mkdir()
    assert log.flush(timeout=10) is True
    log.close()
    assert read_chunks(tmp_path / "r", "steps")["x"].tolist() == [1.0]


def test_rows_logged_after_close_are_ignored_with_one_warning(tmp_path):
    log = RunLog(tmp_path, "r")
    log.close()
    with pytest.warns(UserWarning, match="after close"):
        log.log_step(0, {"x": 1.0})
    log.log_step(1, {"x": 1.0})
    log.close()
    assert chunk_files(tmp_path / "r", "steps") == []


# -- timing of writes, files on disk ---------------------------------------------------------------
def test_rows_reach_disk_every_flush_interval_without_a_flush_call(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=0.05) as log:
        log.log_step(0, {"x": 1.0})
        assert wait_until(lambda: chunk_files(tmp_path / "r", "steps"))


def test_a_table_reaching_chunk_rows_is_written_at_once(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=3600, chunk_rows=10) as log:
        for step in range(5):
            log.log_tokens(step, {"entropy": np.full(5, float(step))})
        assert wait_until(lambda: len(chunk_files(tmp_path / "r", "tokens")) == 2)
    tokens = read_chunks(tmp_path / "r", "tokens")
    np.testing.assert_array_equal(tokens["entropy"], np.repeat(np.arange(5.0), 5))


def test_flush_puts_everything_logged_on_disk_and_no_temporary_remains(tmp_path):
    with RunLog(tmp_path, "r", flush_interval_s=3600) as log:
        for step in range(20):
            log.log_step(step, {"x": step / 2})
        assert log.flush(timeout=10) is True
        assert read_chunks(tmp_path / "r", "steps")["x"].tolist() == [step / 2 for step in range(20)]
        assert not list((tmp_path / "r").rglob("*.tmp"))


def test_a_restarted_writer_starts_a_new_segment_and_leaves_old_files_alone(tmp_path):
    with RunLog(tmp_path, "r", config={"seed": 1}) as log:
        log.log_step(0, {"x": 1.0})
    first = {p.name: p.read_bytes() for p in chunk_files(tmp_path / "r", "steps")}
    started = json.loads((tmp_path / "r" / "run.json").read_text())["started_at"]
    with RunLog(tmp_path, "r") as log:
        assert log.segment == 1
        log.log_step(1, {"x": 2.0})
    files = chunk_files(tmp_path / "r", "steps")
    assert [p.name for p in files] == ["rank-0.seg-0.chunk-0.parquet", "rank-0.seg-1.chunk-0.parquet"]
    assert {p.name: p.read_bytes() for p in files[:1]} == first
    resumed = json.loads((tmp_path / "r" / "run.json").read_text())
    assert resumed["started_at"] == started and len(resumed["resumed_at"]) == 1
    assert resumed["config"] == {"seed": 1}


def test_stale_temporaries_of_the_starting_rank_are_removed_and_other_ranks_kept(tmp_path):
    folder = tmp_path / "r" / "steps"
    folder.mkdir(parents=True)
    mine, theirs = folder / ".rank-0.seg-0.chunk-3.parquet.tmp", folder / ".rank-1.seg-0.chunk-3.parquet.tmp"
    for path in (mine, theirs):
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - 60, time.time() - 60))
    with RunLog(tmp_path, "r") as log:
        assert log.segment == 0  # the removed temporary held no published rows
    assert not mine.exists() and theirs.exists()


def test_each_rank_writes_its_own_files_and_only_rank_zero_writes_run_json(tmp_path):
    with RunLog(tmp_path, "r", rank=1) as log:
        log.log_step(0, {"x": 1.0})
    assert not (tmp_path / "r" / "run.json").exists()
    with RunLog(tmp_path, "r", rank=0) as log:
        log.log_step(0, {"x": 2.0})
    names = [p.name for p in chunk_files(tmp_path / "r", "steps")]
    assert names == ["rank-0.seg-0.chunk-0.parquet", "rank-1.seg-0.chunk-0.parquet"]
    assert read_chunks(tmp_path / "r", "steps")["rank"].tolist() == [0, 1]
    assert (tmp_path / "r" / "rank-1.heartbeat").exists() and (tmp_path / "r" / "run.json").exists()


def test_the_heartbeat_is_touched_while_the_writer_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(meta, "HEARTBEAT_INTERVAL_S", 0.05)
    with RunLog(tmp_path, "r") as log:
        beat = log.path / "rank-0.heartbeat"
        os.utime(beat, (time.time() - 100, time.time() - 100))
        assert wait_until(lambda: time.time() - beat.stat().st_mtime < 5)
