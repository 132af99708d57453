"""compact_run: merged runs read exactly as before, also after a crash at any stage."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import log_child  # tests/ is on sys.path under pytest's default import mode
from entropymon.errors import InputError, RunNotFoundError
from entropymon.log.compact import STAGES, compact_run
from entropymon.log.reader import read_run
from entropymon.log.schema import TABLES
from entropymon.log.writer import RunLog

CHILD = Path(__file__).with_name("log_child.py")


def make_messy_run(logdir: Path) -> Path:
    """Two ranks, several chunks per segment, a restarted writer re-logging steps, split step rows."""
    for rank in (0, 1):
        with RunLog(logdir, "r", rank=rank, flush_interval_s=3600) as log:
            for step in range(6):
                log_child.log_one(log, step)
                if step % 2 == 1:
                    log.flush()
            log.log_step(2, {"eval_accuracy": 0.5})
    with RunLog(logdir, "r", flush_interval_s=3600) as log:  # rank 0 resumed at step 4
        for step in range(4, 8):
            log.log_step(step, {"entropy_mean": -step, "entropy_hist": [step, 1]})
            log.log_samples(step, {"sample_id": [0], "reward": [-1.0], "text": ["t"]})
            log.flush()
    return logdir / "r"


def tables(run_path: Path) -> dict[str, pd.DataFrame]:
    run = read_run(run_path)
    return {table: getattr(run, table) for table in TABLES}


def assert_reads_as(run_path: Path, expected: dict[str, pd.DataFrame]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        actual = tables(run_path)
    for table in TABLES:
        pd.testing.assert_frame_equal(actual[table], expected[table])


def leftovers(run_path: Path) -> list[str]:
    return sorted(p.name for table in TABLES for p in (run_path / table).iterdir() if not p.name.endswith(".parquet"))


def one_file_per_table_and_rank(run_path: Path) -> bool:
    names = [(p.parent.name, p.name.split(".")[0]) for p in read_run(run_path).files]
    return sorted(names) == sorted((table, f"rank-{rank}") for table in TABLES for rank in (0, 1))


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    run_path = make_messy_run(tmp_path_factory.mktemp("messy"))
    return run_path, tables(run_path)


def copy_run(messy_run, tmp_path: Path) -> Path:
    return Path(shutil.copytree(messy_run[0], tmp_path / "r"))


def test_compaction_leaves_one_file_per_table_and_rank_and_reads_the_same(messy_run, tmp_path):
    run_path = copy_run(messy_run, tmp_path)
    files_before = read_run(run_path).files
    assert len(files_before) > 12
    result = compact_run(run_path)
    assert sorted(result.replaced) == sorted(files_before)
    assert len(result.written) == 6 and all(p.exists() for p in result.written)
    assert one_file_per_table_and_rank(run_path)
    assert leftovers(run_path) == []
    assert_reads_as(run_path, messy_run[1])


def test_compacting_a_compacted_run_changes_nothing(messy_run, tmp_path):
    run_path = copy_run(messy_run, tmp_path)
    compact_run(run_path)
    files = read_run(run_path).files
    result = compact_run(run_path)
    assert result.written == [] and result.replaced == []
    assert read_run(run_path).files == files


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("stage", STAGES)
def test_a_crash_after_any_stage_loses_and_duplicates_nothing(messy_run, tmp_path, table, stage):
    run_path = copy_run(messy_run, tmp_path)
    crashed = subprocess.run([sys.executable, str(CHILD), "compact", str(tmp_path), "r", table, stage],
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 17, crashed.stdout + crashed.stderr  # it did die right after that stage
    assert_reads_as(run_path, messy_run[1])
    if stage == "renamed":  # a crash in the middle of deleting the replaced files
        replaced = sorted((run_path / table).glob("rank-0.seg-0.*.parquet"))
        replaced[0].unlink()
        assert_reads_as(run_path, messy_run[1])
    result = compact_run(run_path)  # finishes or rolls back the interrupted compaction, then compacts
    assert result.recovered == (0 if stage == "done" else 1)
    assert one_file_per_table_and_rank(run_path)
    assert leftovers(run_path) == []
    assert_reads_as(run_path, messy_run[1])


def test_unreadable_chunks_are_left_in_place_and_the_rest_is_merged(messy_run, tmp_path):
    run_path = copy_run(messy_run, tmp_path)
    broken = run_path / "samples" / "rank-0.seg-0.chunk-99.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="chunk-99.parquet: skipped"):
        compact_run(run_path)
    assert broken.exists()
    compacted = tables(run_path)  # the file was warned about once already; it is still skipped
    for table in TABLES:
        pd.testing.assert_frame_equal(compacted[table], messy_run[1][table])


def test_a_writer_started_after_compaction_writes_a_newer_segment(messy_run, tmp_path):
    run_path = copy_run(messy_run, tmp_path)
    compact_run(run_path)
    with RunLog(tmp_path, "r") as log:
        assert log.segment > max(int(p.name.split("seg-")[1].split(".")[0]) for p in read_run(run_path).files)
        log.log_step(7, {"entropy_mean": 70.0})
    steps = read_run(run_path).steps
    assert steps[(steps["step"] == 7) & (steps["rank"] == 0)]["entropy_mean"].tolist() == [70.0]


def test_a_live_run_is_refused(tmp_path):
    with RunLog(tmp_path, "r") as log:
        log.log_step(0, {"x": 1.0})
        log.flush()
        with pytest.raises(InputError, match="still being written"):
            compact_run(tmp_path / "r")


def test_a_missing_run_raises_run_not_found(tmp_path):
    with pytest.raises(RunNotFoundError):
        compact_run(tmp_path / "missing")
