"""Regenerate the bundled ``sample_logs/``: two real demo runs that differ in one entropy-relevant knob.

Why two runs: a comparison only means something when one knob changes. Both runs share the seed,
the warm-started model and every GRPO setting; only the sampling temperature differs (1.0, the
baseline, vs 1.3, which samples - and measures entropy - from a flatter distribution). Each run is
compacted (one Parquet file per table) so the folder stays small; token rows are sampled sparsely
(4 sequences every 10 steps, the Monitor's defaults).

Run from the repository root (takes a few minutes on a 2-core CPU)::

    python -m entropymon.demo.make_sample_logs                 # -> sample_logs/
    python -m entropymon.demo.make_sample_logs --steps 100 --out /tmp/samples
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

from entropymon.demo.grpo import GrpoSettings
from entropymon.demo.run import CACHE_FOLDER, run_demo

SAMPLE_RUNS = {"grpo-temp1.0": 1.0, "grpo-temp1.3": 1.3}  # run name -> sampling temperature
DEFAULT_STEPS = GrpoSettings.steps  # the demo's default
DEFAULT_SEED = 0


def make_sample_logs(out="sample_logs", steps: int = DEFAULT_STEPS, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write the sample runs into ``out`` (replacing runs of the same name); returns their folders."""
    from entropymon.log.compact import compact_run

    out = Path(out)
    paths = []
    for name, temperature in SAMPLE_RUNS.items():
        if (out / name).exists():
            shutil.rmtree(out / name)
        path = run_demo(steps=steps, logdir=out, run=name, seed=seed, dashboard=False, temperature=temperature,
                        print_every=25)
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
    options = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for path in make_sample_logs(options.out, options.steps, options.seed):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
