"""A child process for the log crash tests: it writes a run and is killed, terminated or crashed.

Why a separate script: crash safety can only be tested by really ending a process (SIGKILL,
SIGTERM, interpreter exit, ``os._exit`` mid-compaction), which a test cannot do to itself.

Usage: ``python tests/log_child.py MODE LOGDIR RUN [ARGS]`` with MODE one of
- ``write FIRST_STEP N_STEPS [START_AT [FANOUT]]``: log steps (with samples and tokens), flush
  after each and print the step once its flush returned True; ``N_STEPS`` 0 means forever (until
  killed); ``START_AT`` (Unix time) makes it open the log at that instant, so two children start
  together; ``FANOUT`` is the writer's ``merge_fanout`` (small: merges all the time);
- ``sigterm-chained``: install a Python SIGTERM handler, open the log, log steps without
  flushing, print ``ready`` and wait; the entropymon handler must flush then call ours;
- ``sigterm-default``: the same without a previous handler (the process must die by SIGTERM);
- ``atexit``: log steps without flushing or closing and return normally;
- ``fork``: open the log, fork a child that exits normally, then log and close in the parent;
  prints the run.json status seen right after the child exited;
- ``compact TABLE STAGE``: compact the run and ``os._exit(17)`` right after (TABLE, STAGE).
The values logged are functions of the step (see ``step_metrics``), so a reader can check them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

SAMPLES_PER_STEP = 3
TOKENS_PER_STEP = 8
STEPS_BEFORE_SIGNAL = 25


def step_metrics(step: int) -> dict:
    return {"entropy_mean": step / 7.0, "reward_mean": -step / 3.0}


def sample_rows(step: int) -> dict:
    return {"sample_id": np.arange(SAMPLES_PER_STEP), "reward": np.full(SAMPLES_PER_STEP, step * 0.5)}


def token_rows(step: int) -> dict:
    return {"position": np.arange(TOKENS_PER_STEP, dtype=np.int32),
            "entropy": np.linspace(0, 1, TOKENS_PER_STEP, dtype=np.float32) + step}


def log_one(log, step: int) -> None:
    log.log_step(step, step_metrics(step))
    log.log_samples(step, sample_rows(step))
    log.log_tokens(step, token_rows(step))


def write(logdir: str, run: str, first: int, count: int, start_at: float = 0.0, fanout: int = 8) -> None:
    from entropymon.log.writer import RunLog

    while time.time() < start_at:
        time.sleep(0.0005)
    log = RunLog(logdir, run, flush_interval_s=0.05, merge_fanout=fanout)
    print("ready", flush=True)
    step = first
    while count == 0 or step < first + count:
        log_one(log, step)
        if log.flush(timeout=10):
            print(step, flush=True)
        step += 1
    log.close()


def wait_for_signal(logdir: str, run: str, *, chained: bool) -> None:
    if chained:
        def previous_handler(signum, frame):
            print(f"previous handler called with {signum}", flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, previous_handler)
    from entropymon.log.writer import RunLog

    log = RunLog(logdir, run, flush_interval_s=3600)  # only the SIGTERM handler writes
    for step in range(STEPS_BEFORE_SIGNAL):
        log_one(log, step)
    print("ready", flush=True)
    # short sleeps, as a training loop runs Python between its blocking calls: the kernel may hand
    # the signal to a thread a C library started without blocking it (OpenBLAS's, here), and then
    # the handler runs only once the main thread's current blocking call returns (one 60 s sleep
    # made this test time out about once in a hundred runs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
    print("no signal came", flush=True)


def exit_without_close(logdir: str, run: str) -> None:
    from entropymon.log.writer import RunLog

    log = RunLog(logdir, run, flush_interval_s=3600)  # only the atexit hook writes
    for step in range(STEPS_BEFORE_SIGNAL):
        log_one(log, step)
    print("returning", flush=True)


def fork_then_log(logdir: str, run: str) -> None:
    from entropymon.log.writer import RunLog

    log = RunLog(logdir, run, flush_interval_s=3600)
    log_one(log, 0)
    pid = os.fork()
    if pid == 0:  # the child: a normal interpreter exit runs atexit, which must leave the log alone
        sys.exit(0)
    os.waitpid(pid, 0)
    status = json.loads((Path(logdir) / run / "run.json").read_text())["status"]
    print(f"status after the child exited: {status}", flush=True)
    log_one(log, 1)
    log.close()


def compact_and_crash(logdir: str, run: str, table: str, stage: str) -> None:
    from entropymon.log.compact import compact_run

    def crash_after(done_table: str, done_stage: str, rank: int) -> None:
        if (done_table, done_stage) == (table, stage):
            os._exit(17)

    compact_run(Path(logdir) / run, on_stage=crash_after)
    print("finished without crashing", flush=True)


def main(argv: list[str]) -> None:
    mode, logdir, run, *rest = argv
    if mode == "write":
        options = [float(rest[2])] if len(rest) > 2 else []
        options += [int(rest[3])] if len(rest) > 3 else []
        write(logdir, run, int(rest[0]), int(rest[1]), *options)
    elif mode == "sigterm-chained":
        wait_for_signal(logdir, run, chained=True)
    elif mode == "sigterm-default":
        wait_for_signal(logdir, run, chained=False)
    elif mode == "atexit":
        exit_without_close(logdir, run)
    elif mode == "fork":
        fork_then_log(logdir, run)
    elif mode == "compact":
        compact_and_crash(logdir, run, rest[0], rest[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
