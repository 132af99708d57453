"""Crash-safe Parquet logs of a run: the writer (no torch), the reader and the compactor.

Modules, in the order data passes through them:
``schema`` (file names, key columns) -> ``rows`` (logged rows to Arrow) -> ``worker`` (the
background thread) -> ``durable`` (atomic writes) -> ``merge`` (the writer's tiered merging of
its own chunks) -> ``writer`` (RunLog, the public writer;
``shutdown`` flushes it at exit and on SIGTERM; ``meta`` keeps run.json and heartbeats) ->
``layout`` (which files count) -> ``cache`` -> ``resolve`` (newest segment wins, step rows
merge) -> ``reader`` (read_run, list_runs, read_table) and ``compact`` (compact_run).
Import the public names from ``entropymon`` or from their modules; nothing is imported here so
that the writer never pays for pandas.
"""
