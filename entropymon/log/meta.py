"""run.json and heartbeats: who wrote a run, with which config, and whether it is still running.

Why: the metadata must be readable while a trainer runs and after it crashes. run.json is only
ever replaced atomically; liveness cannot come from run.json alone (a killed writer never sets
``status: closed``), so each rank's writer also touches a tiny ``rank-R.heartbeat`` file and a
run is live while its status is "running" and some heartbeat is recent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import socket
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from entropymon._version import __version__
from entropymon.errors import InputError, LogFormatError
from entropymon.log.durable import write_json_atomic
from entropymon.log.schema import RUN_META_FILE, SCHEMA_VERSION, heartbeat_filename

HEARTBEAT_INTERVAL_S = 5.0
# a run whose newest heartbeat is older than this is not live (its writer died or hung)
LIVE_WITHIN_S = 30.0


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def short_host() -> str:
    host = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "-", host) or "host"


def create_generated_run(logdir: Path) -> Path:
    """Make and return a new, unique run folder named ``YYYYmmdd-HHMMSS-host[-N]``.

    ``os.mkdir`` fails when the folder exists, so two processes starting in the same second
    still get different folders.
    """
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{short_host()}"
    for attempt in range(1000):
        path = logdir / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise InputError(f"logdir: could not find a free run name like {base!r} in {logdir}")


def _to_json_value(value, where: str, converted: list[str], parents: tuple[int, ...] = ()):
    """``value`` with every part made a JSON type; ``converted`` collects where str() was used.

    ``parents``: ids of the containers above ``value``; a container that holds itself (directly or
    deeper down) cannot be written as JSON and is an ``InputError`` naming where the cycle closes.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (Mapping, list, tuple)) or dataclasses.is_dataclass(value):
        if id(value) in parents:
            raise InputError(f"config: expected a tree of values, got a reference cycle: {where or 'config'} "
                             "holds a container it is inside of")
        parents = (*parents, id(value))
    if isinstance(value, Mapping):
        return {str(k): _to_json_value(v, f"{where}.{k}" if where else str(k), converted, parents)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v, f"{where}[{i}]", converted, parents) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_json_value(dataclasses.asdict(value), where, converted, parents)
    if hasattr(value, "to_dict") and callable(value.to_dict):  # e.g. transformers' TrainingArguments
        try:
            return _to_json_value(value.to_dict(), where, converted, parents)
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - a config object's own to_dict() may fail any way: try the next form
            pass
    if hasattr(value, "item") and callable(value.item) and getattr(value, "size", 1) == 1:  # numpy scalar
        try:
            return _to_json_value(value.item(), where, converted, parents)
        except Exception:  # noqa: BLE001 - an .item() that is not numpy's may fail any way: try the next form
            pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    converted.append(where or "<config>")
    return str(value)


def config_to_json(config) -> dict | None:
    """A JSON-serialisable copy of the user's config; values JSON cannot hold are stored as str().

    Accepts a mapping, a dataclass or an object with ``to_dict()``; warns naming the keys that
    were converted with str() so nobody is surprised by a string where they logged an object.
    """
    if config is None:
        return None
    converted: list[str] = []
    try:
        value = _to_json_value(config, "", converted)
    except RecursionError:  # a cycle through an object's to_dict() or a dataclass, or absurd depth
        raise InputError("config: expected a tree of values, got one nested too deeply (or a reference "
                         "cycle) to store in run.json") from None
    if not isinstance(value, dict):
        raise InputError(
            f"config: expected a mapping, a dataclass or an object with to_dict(), got {type(config).__name__}"
        )
    if converted:
        shown = ", ".join(converted[:10]) + (" ..." if len(converted) > 10 else "")
        warnings.warn(f"config: values at {shown} are not JSON types; stored in run.json as str()", stacklevel=3)
    return value


def new_meta(run: str, config: dict | None, rank: int) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "entropymon_version": __version__,
        "run": run,
        "config": config,
        "started_at": now_iso(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "rank": rank,
        "status": "running",
    }


def read_meta(run_path: Path) -> dict:
    """The parsed run.json of ``run_path``; LogFormatError naming the file when missing or corrupt."""
    meta_path = run_path / RUN_META_FILE
    try:
        text = meta_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LogFormatError(f"{meta_path}: expected an entropymon run.json, found no such file") from None
    except OSError as error:
        raise LogFormatError(f"{meta_path}: could not read run.json ({error})") from None
    except UnicodeDecodeError as error:
        raise LogFormatError(f"{meta_path}: expected UTF-8 JSON, the file is corrupt ({error})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise LogFormatError(f"{meta_path}: expected JSON, the file is corrupt ({error})") from None
    except RecursionError:
        raise LogFormatError(f"{meta_path}: expected run.json, got JSON nested too deeply to be one") from None
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise LogFormatError(f"{meta_path}: expected an object with 'schema_version', got {text[:80]!r}")
    return meta


def write_meta(run_path: Path, meta: dict) -> None:
    write_json_atomic(meta, run_path / RUN_META_FILE)


def write_heartbeat(run_path: Path, rank: int, segment: int) -> Path:
    path = run_path / heartbeat_filename(rank)
    write_json_atomic({"rank": rank, "segment": segment, "pid": os.getpid(), "host": socket.gethostname()}, path)
    return path


def touch(path: Path) -> None:
    os.utime(path)


def newest_heartbeat(run_path: Path) -> float | None:
    """The newest mtime among the run's heartbeat files (Unix seconds), or None when there is none."""
    newest = None
    for path in run_path.glob("rank-*.heartbeat"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest


def is_live(run_path: Path, meta: dict, now: float | None = None) -> bool:
    """True while the run's status is "running" and a writer touched a heartbeat recently."""
    if meta.get("status") != "running":
        return False
    beat = newest_heartbeat(run_path)
    if beat is None:
        try:
            beat = (run_path / RUN_META_FILE).stat().st_mtime
        except OSError:
            return False
    return (time.time() if now is None else now) - beat <= LIVE_WITHIN_S
