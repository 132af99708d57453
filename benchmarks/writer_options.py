"""Parquet write options for the token table: write speed, file size and cold read, as ratios.

Why: the writer runs at the Parquet encoder's speed (benchmarks/writer.py: RunLog / direct ~ 1),
so the options in ``entropymon/log/durable.py`` set its throughput. Each variant writes the same
10.24M token rows (``writer.token_batch``, 4096-row batches joined into 1M-row chunks as the
writer thread does) through the same temporary + fsync + rename as ``durable.py`` (page checksums
always on), then reads them back cold (page cache dropped with ``posix_fadvise``) with
``pq.read_table``. Variants alternate in a shuffled order each round; the table gives medians and
ratios against the first variant (the options before 2026-12-06), so a noisy machine's load
cancels out. ``cpu`` is the writing thread's CPU time, less sensitive to other jobs than the wall.
A second, tighter table: the CPU time of encoding one chunk to memory (no disk), variants
interleaved ``--encode-reps`` times: on a shared machine the full-write ratios wander by +-15%.

Run: ``python benchmarks/writer_options.py [--rounds 7]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from entropymon.log import durable
from entropymon.log.rows import column_rows_to_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from writer import token_batch  # noqa: E402  (the Monitor-like token batches of benchmarks/writer.py)

KEYS = ["step", "rank"]
FLOATS = ["entropy", "logprob", "advantage", "cov"]
OLD = {"compression": "zstd", "compression_level": 1, "use_dictionary": KEYS, "write_page_checksum": True}
LZ4 = {**OLD, "compression": "lz4", "compression_level": None}
STATS = {"write_statistics": KEYS}

# name: (options, how the chunk is prepared: None, "combine" (contiguous arrays) or "required")
VARIANTS = {
    "before: zstd-1, dict step/rank, all stats": (OLD, None),
    "zstd-1, stats step/rank": ({**OLD, **STATS}, None),
    "zstd -1, stats step/rank": ({**OLD, **STATS, "compression_level": -1}, None),
    "zstd-1, byte_stream_split floats": ({**OLD, "use_byte_stream_split": FLOATS}, None),
    "lz4, all stats": (LZ4, None),
    "NOW: lz4, stats step/rank": ({**LZ4, **STATS}, None),
    "lz4, stats step/rank, byte_stream_split floats": ({**LZ4, **STATS, "use_byte_stream_split": FLOATS}, None),
    "lz4, stats step/rank, no dictionary": ({**LZ4, **STATS, "use_dictionary": False}, None),
    "lz4, stats step/rank, dictionary on all ints": (
        {**LZ4, **STATS, "use_dictionary": KEYS + ["sample_id", "position", "token_id"]}, None),
    "lz4, stats step/rank, 8 MB pages": ({**LZ4, **STATS, "data_page_size": 8 << 20}, None),
    "lz4, stats step/rank, chunks combined first": ({**LZ4, **STATS}, "combine"),
    "snappy, stats step/rank": ({**OLD, **STATS, "compression": "snappy", "compression_level": None}, None),
    "uncompressed, stats step/rank": ({**OLD, **STATS, "compression": "none", "compression_level": None}, None),
    "(not adopted) lz4, stats, REQUIRED columns": ({**LZ4, **STATS}, "required"),
}


def build_chunks(n_chunks: int, batches_per_chunk: int) -> list[pa.Table]:
    rng = np.random.default_rng(0)
    batches = [token_batch(rng) for _ in range(16)]
    chunks, step = [], 0
    for _ in range(n_chunks):
        pieces = []
        for _ in range(batches_per_chunk):
            pieces.append(column_rows_to_table(step, 0, batches[step % len(batches)], "bench"))
            step += 1
        chunks.append(pa.concat_tables(pieces))
    return chunks


def write_all(folder: Path, chunks: list[pa.Table], options: dict, prepare: str | None) -> tuple[float, float]:
    """(wall s, thread CPU s) to write ``chunks`` as durable.py does (temporary, fsync, rename)."""
    folder.mkdir()
    wall, cpu = time.perf_counter(), time.thread_time()
    for index, table in enumerate(chunks):
        if prepare == "combine":
            table = table.combine_chunks()
        elif prepare == "required":
            table = table.cast(pa.schema([field.with_nullable(False) for field in table.schema]))
        temp = folder / f".c{index}.tmp"
        pq.write_table(table, temp, row_group_size=max(table.num_rows, 1), **options)
        durable._fsync_file(temp)
        durable.publish(temp, folder / f"c{index}.parquet")
    return time.perf_counter() - wall, time.thread_time() - cpu


def read_cold(folder: Path) -> tuple[float, pa.Table]:
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    start = time.perf_counter()
    table = pq.read_table(folder)
    return time.perf_counter() - start, table


def encode_cpu(chunk: pa.Table, reps: int) -> dict[str, float]:
    """Median per-rep ratio (baseline CPU / variant CPU) of encoding ``chunk`` to memory."""
    prepared = {None: chunk, "combine": chunk.combine_chunks(),
                "required": chunk.cast(pa.schema([field.with_nullable(False) for field in chunk.schema]))}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for rep in range(reps):
        order = list(VARIANTS)
        random.Random(rep).shuffle(order)
        for name in order:
            options, prepare = VARIANTS[name]
            start = time.thread_time()
            pq.write_table(prepared[prepare], pa.BufferOutputStream(), row_group_size=chunk.num_rows, **options)
            cpu[name].append(time.thread_time() - start)
    base = cpu[next(iter(VARIANTS))]
    return {name: float(np.median([b / x for x, b in zip(times, base)])) for name, times in cpu.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=10, help="1,024,000-row chunks per variant")
    parser.add_argument("--encode-reps", type=int, default=25, help="rounds of the encode-only table")
    args = parser.parse_args()
    chunks = build_chunks(args.chunks, 250)
    rows = sum(chunk.num_rows for chunk in chunks)
    expected = pa.concat_tables(chunks).combine_chunks()
    results = {name: {"wall": [], "cpu": [], "read": [], "bytes": 0} for name in VARIANTS}
    root = Path(tempfile.mkdtemp(prefix="writer_options."))
    print(f"{rows:,} token rows per variant in {args.chunks} chunks, {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        for round_ in range(args.rounds):
            order = list(VARIANTS)
            random.Random(round_).shuffle(order)
            for name in order:
                folder = root / f"r{round_}-{list(VARIANTS).index(name)}"
                wall, cpu = write_all(folder, chunks, *VARIANTS[name])
                read, back = read_cold(folder)
                if round_ == 0:  # every variant gives back exactly the rows written
                    back = back.sort_by("step").select(expected.column_names).cast(expected.schema)
                    assert back.equals(expected), name
                result = results[name]
                result["wall"].append(wall), result["cpu"].append(cpu), result["read"].append(read)
                result["bytes"] = sum(path.stat().st_size for path in folder.iterdir())
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = results[next(iter(VARIANTS))]

    def ratio(result, key):  # median of the per-round ratios against the baseline
        return float(np.median([b / x for x, b in zip(result[key], base[key])]))

    print("\n| options | write M rows/s | write x | cpu x | MB per M rows | size x | cold read s | read time x |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {rows / np.median(result['wall']) / 1e6:.1f} | {ratio(result, 'wall'):.2f} | "
              f"{ratio(result, 'cpu'):.2f} | {result['bytes'] / rows:.1f} | {result['bytes'] / base['bytes']:.2f} | "
              f"{np.median(result['read']):.3f} | {1 / ratio(result, 'read'):.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.2f}; encoding one {chunks[0].num_rows:,}-row chunk to memory, "
          f"thread CPU, median of {args.encode_reps} interleaved rounds:")
    speed = encode_cpu(chunks[0], args.encode_reps)
    for name, ratio_ in speed.items():
        print(f"  {name:52s} x{ratio_:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
