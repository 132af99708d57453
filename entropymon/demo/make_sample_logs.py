"""Regenerate the bundled ``sample_logs/``: real demo runs, each differing from the baseline in one knob.

Why: a comparison only means something when one knob changes. All runs share the seed, the
warm-started model and every GRPO setting but one (``SAMPLE_RUNS``):

- ``grpo-temp1.0``, the baseline: plain GRPO; its entropy collapses (the collapse rules fire).
- ``grpo-temp1.3``: a hotter sampling temperature, which samples - and measures entropy - from a
  flatter distribution; it still collapses, relative to its own start.
- ``grpo-adaptive-ent0.55`` (``HEALTHY_RUN``): a remedy the collapse alert names, TRL's adaptive
  entropy control (``use_adaptive_entropy``) towards 0.55 nats, about the starting entropy: entropy
  is held, held-out accuracy still rises, and no warning fires on it (``entropymon check`` exits 0).
  The other remedies tried for it, and what each did, are in sample_logs/README.md.

Each run is compacted (one Parquet file per table) so the folder stays small; token rows are
sampled sparsely (4 sequences every 10 steps, the Monitor's defaults).

Run from the repository root (each run takes a few minutes on an idle 2-core CPU)::

    python -m entropymon.demo.make_sample_logs                 # -> sample_logs/
    python -m entropymon.demo.make_sample_logs --only grpo-temp1.3
    python -m entropymon.demo.make_sample_logs --steps 100 --out /tmp/samples
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

from entropymon.demo.grpo import GrpoSettings
from entropymon.demo.run import CACHE_FOLDER, run_demo
from entropymon.errors import InputError

SAMPLE_RUNS = {  # run name -> what it changes from the baseline (run_demo's arguments), and why
    "grpo-temp1.0": {"temperature": 1.0, "description": "baseline: plain GRPO, entropy collapses"},
    "grpo-temp1.3": {"temperature": 1.3, "description": "hotter sampling temperature; entropy still collapses"},
    "grpo-adaptive-ent0.55": {"temperature": 1.0, "entropy_target": 0.55,
                              "description": "TRL's adaptive entropy control towards 0.55 nats (about the starting "
                                             "entropy): entropy held, no warning"},
}
HEALTHY_RUN = "grpo-adaptive-ent0.55"  # the run on which no warning fires
DEFAULT_STEPS = GrpoSettings.steps  # the demo's default
DEFAULT_SEED = 0


def make_sample_logs(out="sample_logs", steps: int = DEFAULT_STEPS, seed: int = DEFAULT_SEED,
                     only: list[str] | None = None) -> list[Path]:
    """Write the sample runs (``only`` these names, default all) into ``out``, replacing runs of the same
    name; returns their folders."""
    from entropymon.log.compact import compact_run

    names = list(SAMPLE_RUNS) if not only else list(only)
    unknown = [name for name in names if name not in SAMPLE_RUNS]
    if unknown:
        raise InputError(f"only: expected sample run names among {list(SAMPLE_RUNS)}, got {unknown}")
    out = Path(out)
    paths = []
    for name in names:
        if (out / name).exists():
            shutil.rmtree(out / name)
        path = run_demo(steps=steps, logdir=out, run=name, seed=seed, dashboard=False, print_every=25,
                        **SAMPLE_RUNS[name])
        compact_run(path)
        (path / "rank-0.heartbeat").unlink(missing_ok=True)
        paths.append(path)
    shutil.rmtree(out / CACHE_FOLDER, ignore_errors=True)  # the warm-start cache is not a sample
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate entropymon's sample_logs/ from the real demo.")
    parser.add_argument("--out", default="sample_logs")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--only", default="", help=f"comma-separated run names (default: all of {list(SAMPLE_RUNS)})")
    options = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    only = [name for name in options.only.split(",") if name]
    for path in make_sample_logs(options.out, options.steps, options.seed, only=only):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
