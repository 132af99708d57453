"""Import TensorBoard event files (veRL, OpenRLHF and TRL can all write them).

Why our own record reader: TensorBoard's ``EventAccumulator`` silently returns nothing for a
garbage file and cannot tell a truncated file from a complete one. Event files are TFRecord
streams (``uint64 length | uint32 masked-crc32c(length) | payload | uint32 crc(payload)``), so
reading the records directly lets us say exactly which file is broken and where, while a
truncated *last* record (a trainer still writing, or killed) is skipped with a warning. Only
the 12-byte length header is checksummed (cheap in Python); a damaged payload still fails to
parse as an ``Event``.

Tag names mapped onto the registry (first present wins; every other tag is kept as
``import/<tag>``): veRL's (see ``entropymon.importers.verl_jsonl``), TRL/transformers' ``train/...``
and ``eval/...`` (``train/entropy``, ``train/reward``, ``train/frac_reward_zero_std``, ...) and
OpenRLHF's ``train/reward``, ``train/actor_lr``, ``train/response_length``.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

from entropymon.errors import ImportFormatError
from entropymon.importers.common import NameMap, Progress, build_imported, write_imported

TENSORBOARD_NAMES = NameMap(
    exact={
        "entropy_mean": ("actor/entropy", "train/entropy", "actor/entropy_loss"),
        "reward_mean": ("critic/score/mean", "train/reward"),
        "reward_std": ("train/reward_std",),
        "zero_std_group_frac": ("train/frac_reward_zero_std",),
        "lr": ("actor/lr", "train/learning_rate", "train/actor_lr"),
        "length_mean": ("response_length/mean", "train/completions/mean_length", "train/response_length"),
        "length_max": ("response_length/max", "train/completions/max_length"),
        "length_min": ("response_length/min", "train/completions/min_length"),
    },
    patterns=((r"train/rewards/(.+)/mean", "reward_func/{0}"),),
)
TENSORBOARD_ACCURACY = (
    r"\A(val-core/.+/(acc|reward|score)/mean@1|val/test_score/.+"
    r"|eval/(.*[/_])?acc(uracy)?(/mean)?|eval/rewards/[^/]*(acc|correct)[^/]*/mean)\Z"
)
_HEADER = struct.Struct("<QI")  # payload length, masked crc32c of the length bytes
_FOOTER_BYTES = 4
_SCALAR_PLUGIN = "scalars"


def event_files(src) -> list[Path]:
    """The event files at ``src``: the file itself, or every ``*tfevents*`` file below a folder."""
    path = Path(src)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*tfevents*") if p.is_file())
        if files:
            return files
        raise ImportFormatError(f"{path}: found no TensorBoard event files (*tfevents*) in this folder")
    raise ImportFormatError(f"{path}: no such file or folder (expected TensorBoard event files)")


def read_records(path: Path) -> list[bytes]:
    """The payloads of the TFRecord file ``path``; ImportFormatError when it is not one."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data = path.read_bytes()
    payloads: list[bytes] = []
    offset = 0
    while offset < len(data):
        header = data[offset : offset + _HEADER.size]
        if len(header) < _HEADER.size:
            _warn_truncated(path, offset, payloads)
            break
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise ImportFormatError(
                f"{path}: not a TensorBoard event file (record header at byte {offset} fails its checksum)"
            )
        end = offset + _HEADER.size + length + _FOOTER_BYTES
        if end > len(data):
            _warn_truncated(path, offset, payloads)
            break
        payloads.append(data[offset + _HEADER.size : end - _FOOTER_BYTES])
        offset = end
    return payloads


def _warn_truncated(path: Path, offset: int, payloads: list[bytes]) -> None:
    if not payloads:
        raise ImportFormatError(f"{path}: not a TensorBoard event file (too short for one record)")
    warnings.warn(f"{path}: the last record (byte {offset}) is truncated; skipped it", stacklevel=3)


def read_scalars(paths: list[Path]) -> list[tuple[int, str, float]]:
    """``(step, tag, value)`` for every scalar summary in the event files ``paths``.

    Scalars come as ``simple_value`` (torch/tensorboardX writers) or as 0-d tensors with the
    ``scalars`` plugin (TF2 writers); other summaries (histograms, text, images) are ignored.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    records: list[tuple[int, str, float]] = []
    scalar_tags: set[str] = set()
    for path in paths:
        for index, payload in enumerate(read_records(path)):
            try:
                event = event_pb2.Event.FromString(payload)
            except Exception as error:  # noqa: BLE001  protobuf's DecodeError, whose module depends on the backend
                raise ImportFormatError(f"{path}: record {index} is not a TensorBoard Event ({error})") from None
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == _SCALAR_PLUGIN:
                    scalar_tags.add(value.tag)
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    records.append((int(event.step), value.tag, float(value.simple_value)))
                elif kind == "tensor" and value.tag in scalar_tags:
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size == 1:
                        records.append((int(event.step), value.tag, float(array.reshape(-1)[0])))
    return records


def import_tensorboard(src, out, *, progress: Progress | None = None) -> Path:
    """Import TensorBoard event files (a file or a folder) as the entropymon run ``out``."""
    paths = event_files(src)
    records = read_scalars(paths)
    imported = build_imported(
        "tensorboard", Path(src), records, TENSORBOARD_NAMES, accuracy_pattern=TENSORBOARD_ACCURACY
    )
    return write_imported(imported, out, progress=progress)
