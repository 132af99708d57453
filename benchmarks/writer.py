"""Writer benchmark: token rows/s end to end onto disk, and the latency of the training-thread call.

Why these two numbers: a monitor is useless if it cannot keep up with sampled token rows, and
harmful if a ``log_*`` call ever stalls a training step. Each figure is printed next to a
baseline measured in the same run on the same machine, so ratios stay meaningful on a busy box:
- throughput: ``RunLog.log_tokens`` of 4096-row batches of numpy columns (as the Monitor sends
  them) until ``flush()`` returns, against writing the same rows straight to Parquet with the
  same options in the calling thread (no queue, no thread);
- latency: per-call time of ``log_step`` / ``log_tokens`` while the writer thread is stalled and
  the queue is full (every row dropped), against a bare ``queue.Queue.put_nowait`` on a full
  queue and a no-op call; and the same calls while the writer is busy writing (GIL contention).

Targets (issue 2): >= 10M token rows/s; p99 call <= 0.2 ms.
Run: ``python benchmarks/writer.py [--rows 10000000] [--calls 100000]``
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from entropymon.log import durable
from entropymon.log.reader import read_run
from entropymon.log.rows import column_rows_to_table
from entropymon.log.writer import RunLog

BATCH_ROWS = 4096
COMPLETION_LENGTH = 512


def token_batch(rng: np.random.Generator, rows: int = BATCH_ROWS) -> dict[str, np.ndarray]:
    sequences = rows // COMPLETION_LENGTH
    return {
        "sample_id": np.repeat(np.arange(sequences, dtype=np.int32), COMPLETION_LENGTH),
        "position": np.tile(np.arange(COMPLETION_LENGTH, dtype=np.int32), sequences),
        "token_id": rng.integers(0, 151_936, rows, dtype=np.int32),
        "entropy": rng.gamma(0.5, 1.0, rows).astype(np.float32),
        "logprob": -rng.exponential(0.5, rows).astype(np.float32),
        "advantage": np.repeat(rng.standard_normal(sequences).astype(np.float32), COMPLETION_LENGTH),
        "cov": rng.standard_normal(rows).astype(np.float32) * 1e-2,
    }


def step_metrics(rng: np.random.Generator) -> dict[str, float]:
    names = ["entropy_mean", "entropy_seq_mean", "entropy_p10", "entropy_p50", "entropy_p80", "entropy_p90",
             "entropy_max", "forking_share", "surprisal_mean", "n_tokens", "n_sequences", "cov_logp_adv",
             "cov_logp_piadv", "reward_mean", "reward_std", "advantage_mean", "advantage_std",
             "zero_std_group_frac", "n_groups", "pass_at_1", "pass_at_8", "length_mean", "length_std", "lr"]
    return {name: float(value) for name, value in zip(names, rng.random(len(names)))}


# -- throughput ------------------------------------------------------------------------------------
def runlog_throughput(logdir: Path, batches: list[dict], n_batches: int) -> tuple[float, int]:
    """Rows/s from the first log_tokens call until flush() says everything is on disk."""
    log = RunLog(logdir, "throughput")
    rows = 0
    start = time.perf_counter()
    for i in range(n_batches):
        batch = batches[i % len(batches)]
        log.log_tokens(i, batch)
        rows += BATCH_ROWS
    flushed = log.flush()
    elapsed = time.perf_counter() - start
    dropped, errors = log.dropped_rows, log.errors
    log.close()
    if not flushed or dropped or errors:
        raise RuntimeError(f"throughput run lost rows: flushed={flushed} dropped={dropped} errors={errors}")
    return rows / elapsed, len(list((logdir / "throughput" / "tokens").glob("*.parquet")))


def direct_throughput(logdir: Path, batches: list[dict], n_batches: int, chunk_rows: int = 1_000_000) -> float:
    """The same rows converted and written by the calling thread: the cost of Parquet itself."""
    folder = logdir / "direct"
    folder.mkdir()
    start = time.perf_counter()
    pending, pending_rows, chunk = [], 0, 0
    for i in range(n_batches):
        pending.append(column_rows_to_table(i, 0, batches[i % len(batches)], "direct"))
        pending_rows += BATCH_ROWS
        if pending_rows >= chunk_rows or i == n_batches - 1:
            table = pa.concat_tables(pending)
            durable.write_parquet_atomic(table, folder / f".c{chunk}.tmp", folder / f"c{chunk}.parquet")
            pending, pending_rows, chunk = [], 0, chunk + 1
    return n_batches * BATCH_ROWS / (time.perf_counter() - start)


def read_back(run_path: Path) -> tuple[float, float]:
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        rows = len(read_run(run_path).tokens)
        rates.append(rows / (time.perf_counter() - start))
    return rates[0], rates[1]


# -- latency ---------------------------------------------------------------------------------------
def percentiles(samples_ns: np.ndarray) -> str:
    p50, p99, p999 = np.percentile(samples_ns, [50, 99, 99.9]) / 1e3
    return f"p50 {p50:7.2f} us   p99 {p99:7.2f} us   p99.9 {p999:8.2f} us   max {samples_ns.max() / 1e3:9.1f} us"


def time_calls(call, n_calls: int) -> np.ndarray:
    samples = np.empty(n_calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n_calls):
        t0 = clock()
        call(i)
        samples[i] = clock() - t0
    return samples


def stalled_log(logdir: Path, run: str, queue_size: int) -> tuple[RunLog, threading.Event]:
    """A RunLog whose writer thread is blocked and whose queue is full: every further row is dropped."""
    log = RunLog(logdir, run, queue_size=queue_size, flush_interval_s=3600)
    entered, release = threading.Event(), threading.Event()
    handle = log._worker.handle

    def blocking_handle(item):
        entered.set()
        release.wait()
        handle(item)

    log._worker.handle = blocking_handle
    log.log_step(0, {"x": 0.0})
    entered.wait(10)
    while len(log._queue) < queue_size:
        log.log_step(0, {"x": 0.0})
    return log, release


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_240_000, help="token rows for the throughput test")
    parser.add_argument("--calls", type=int, default=100_000, help="timed calls per latency test")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batches = [token_batch(rng) for _ in range(16)]
    metrics = step_metrics(rng)
    n_batches = max(1, args.rows // BATCH_ROWS)

    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp)
        direct = direct_throughput(logdir, batches, n_batches)
        rate, files = runlog_throughput(logdir, batches, n_batches)
        print(f"token rows through RunLog.log_tokens onto disk: {rate / 1e6:6.2f} M rows/s "
              f"({n_batches * BATCH_ROWS:,} rows in {files} chunk files; target >= 10 M rows/s)")
        print(f"baseline, same rows written directly with pyarrow: {direct / 1e6:6.2f} M rows/s  "
              f"-> RunLog / direct = {rate / direct:.2f}")
        first, cached = read_back(logdir / "throughput")
        print(f"reading them back with read_run(...).tokens: {first / 1e6:6.2f} M rows/s first read, "
              f"{cached / 1e6:6.2f} M rows/s from the file cache (informational)")

        full = queue.Queue(maxsize=1)
        full.put_nowait(None)

        def bare_put(i):
            try:
                full.put_nowait(metrics)
            except queue.Full:
                pass

        def no_op(i):
            return None

        print(f"\nper-call latency, {args.calls:,} calls each (target p99 <= 200 us):")
        print(f"  baseline no-op call                 {percentiles(time_calls(no_op, args.calls))}")
        print(f"  baseline queue.Queue.put_nowait     {percentiles(time_calls(bare_put, args.calls))}")
        log, release = stalled_log(logdir, "stalled", queue_size=1000)
        batch = batches[0]
        print(f"  log_step, writer stalled, full      {percentiles(time_calls(lambda i: log.log_step(i, metrics), args.calls))}")
        print(f"  log_tokens, writer stalled, full    {percentiles(time_calls(lambda i: log.log_tokens(i, batch), args.calls))}")
        print(f"  (rows dropped and counted: {log.dropped_rows:,})")
        release.set()
        log.close()

        busy = RunLog(logdir, "busy", chunk_rows=200_000)

        def step_and_tokens(i):
            busy.log_step(i, metrics)
            busy.log_tokens(i, batches[i % len(batches)])

        calls = min(args.calls, 5_000)  # 20M token rows: the writer thread is encoding throughout
        print(f"  log_step+log_tokens, writer busy    {percentiles(time_calls(step_and_tokens, calls))}"
              f"   ({calls:,} calls)")
        busy.close()


if __name__ == "__main__":
    main()
