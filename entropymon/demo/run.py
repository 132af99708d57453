"""``run_demo``: the one-command demo - a real entropy collapse on the CPU, monitored live.

Why these steps: a tiny Llama is warm-started with supervised learning on two-digit addition
until it solves part of the held-out set (cached under ``<logdir>/.demo_cache``), then trained
with TRL's ``GRPOTrainer`` on the exact-answer reward with entropymon attached. RL sharpens the
policy onto the answers it already half-knows: reward and held-out accuracy rise while token
entropy falls - the collapse entropymon is built to watch, produced by a real trainer. The
dashboard (when installed) serves the logdir while it trains.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from entropymon.demo.grpo import GrpoSettings, build_grpo_trainer, check_settings
from entropymon.demo.task import build_tokenizer, extract_answer, split_problems
from entropymon.demo.trainer_callbacks import HeldOutAccuracyCallback, ProgressLines
from entropymon.demo.warmstart import WarmStartSettings, load_or_warm_start

CACHE_FOLDER = ".demo_cache"


def run_demo(steps: int = GrpoSettings.steps, logdir="runs", run: str | None = None, seed: int = 0,
             dashboard: bool = True, host: str = "127.0.0.1", port: int = 8050, temperature: float = 1.0, *,
             eval_every: int = 10, print_every: int = 10, warmstart_steps: int = WarmStartSettings.steps,
             entropy_coef: float = 0.0, lr: float = GrpoSettings.lr, beta: float = GrpoSettings.beta,
             entropy_target: float | None = None, entropy_coef_delta: float = GrpoSettings.entropy_coef_delta,
             description: str | None = None, token_rows_every: int = 10, token_rows_per_step: int = 4,
             dh_probe_every: int = 10, keep_serving: bool | None = None,
             write: Callable[[str], None] = print) -> Path:
    """Warm-start, then train with GRPO for ``steps`` steps with entropymon attached; returns the run folder.

    Args:
        steps: GRPO optimisation steps (128 completions each: 16 prompts x 8 generations).
        logdir, run: where the run goes (``run`` None: a fresh date-time-host name).
        seed: seeds the problem split, the warm start and GRPO; the same seed gives the same run.
        dashboard: serve the dashboard (``entropymon.plugins``) on ``logdir`` at ``host:port`` while training.
        temperature: GRPO's sampling temperature (entropy is measured at it, as TRL does).
        eval_every: held-out greedy accuracy every this many steps (``eval_accuracy``).
        print_every: a progress line every this many steps.
        warmstart_steps: at most this many supervised steps before RL (it stops once the model solves
            45% of a training subset; the cache is per setting).
        lr: GRPO's (constant) learning rate.
        beta: the KL penalty to the warm-started (reference) model (0: none, no reference model).
        entropy_coef: TRL's entropy bonus coefficient (0: plain GRPO; the starting value when adaptive).
        entropy_target: TRL's adaptive entropy control holds entropy near this many nats (None: off).
        entropy_coef_delta: how fast that control moves its coefficient (per optimizer step).
        description: what this run is for, stored in ``run.json`` as ``config.demo.description``.
        token_rows_every, token_rows_per_step: the Monitor's token-row sampling.
        dh_probe_every: the same-batch entropy change every this many steps (0: off; ``attach``).
        keep_serving: after training, keep the dashboard up until Ctrl+C (None: when run interactively).
        write: where progress lines go.
    """
    from entropymon.integrations.trl import attach

    settings = check_settings(GrpoSettings(steps=steps, seed=seed, temperature=temperature, lr=lr, beta=beta,
                                           entropy_coef=entropy_coef, entropy_target=entropy_target,
                                           entropy_coef_delta=entropy_coef_delta))
    logdir = Path(logdir)
    tokenizer = build_tokenizer()
    train, heldout = split_problems(seed)

    server = _start_dashboard(logdir, host, port, write) if dashboard else None
    warm = WarmStartSettings(seed=seed, steps=warmstart_steps)
    write(f"warm start: supervised steps on {len(train)} addition problems until {warm.target_accuracy:.0%} are solved "
          f"(at most {warm.steps}; cached per seed)")
    model, info = load_or_warm_start(logdir / CACHE_FOLDER, tokenizer, train, heldout, warm,
                                     on_progress=lambda step, loss: write(f"  supervised step {step}: loss {loss:.3f}"))
    source = "cache" if info["cached"] else f"{info['seconds']:.0f} s"
    write(f"warm start done ({source}): {info['steps_done']} supervised steps, held-out greedy accuracy "
          f"{info['heldout_accuracy']:.3f}")
    if info["heldout_accuracy"] < 0.2:
        write("  (this seed's warm start solves few problems: most GRPO groups will get no reward and the "
              "collapse will be weak; try another seed)")

    with tempfile.TemporaryDirectory(prefix="entropymon-demo-") as output_dir:
        trainer = build_grpo_trainer(model, tokenizer, train, settings, output_dir)
        config = {"demo": {"grpo": vars(settings), "warmstart": vars(warm),
                           "warmstart_heldout_accuracy": info["heldout_accuracy"], "n_heldout": len(heldout),
                           **({"description": description} if description else {})}}
        monitor = attach(trainer, logdir=str(logdir), run=run, answer_fn=extract_answer, config=config,
                         token_rows_every=token_rows_every, token_rows_per_step=token_rows_per_step,
                         dh_probe_every=dh_probe_every)
        accuracy = HeldOutAccuracyCallback(monitor, tokenizer, heldout, every=eval_every)
        trainer.add_callback(accuracy)
        trainer.add_callback(ProgressLines(steps, every=print_every, accuracy=accuracy, write=write))
        write(f"GRPO: {steps} steps, temperature {temperature}, entropymon writing to {monitor.path}")
        started = time.perf_counter()
        try:
            trainer.train()
        finally:
            monitor.close()
    run_path = Path(monitor.path)
    write(f"done in {time.perf_counter() - started:.0f} s; run written to {run_path}")
    write(_summary_line(accuracy))
    write(f"next: entropymon summary {run_path}    entropymon fit {run_path}    entropymon dashboard --logdir {logdir}")
    if server is not None:
        _keep_serving(server, keep_serving, write, logdir)
    return run_path


def _summary_line(accuracy: HeldOutAccuracyCallback) -> str:
    history = accuracy.history
    if len(history) < 2:
        return "held-out accuracy: not enough measurements"
    first, last = min(history), max(history)
    return f"held-out greedy accuracy {history[first]:.3f} (step {first}) -> {history[last]:.3f} (step {last})"


def _start_dashboard(logdir: Path, host: str, port: int, write):
    """The background dashboard server, or None (with a one-line note) when it cannot start."""
    from entropymon.plugins import load_frontend

    try:
        serve = load_frontend().serve
    except ImportError:
        write("dashboard: not installed (pip install 'entropymon[dashboard]'); training without it")
        return None
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        server = serve(str(logdir), host=host, port=port, background=True)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a busy port must not stop the demo
        write(f"dashboard: could not start on {host}:{port} ({error}); training without it - pass "
              "--port N to serve it on another port, or --no-dashboard to train without it")
        return None
    write(f"dashboard: {getattr(server, 'url', f'http://{host}:{port}')} (live while training; "
          "--no-dashboard trains without it)")
    return server


def _keep_serving(server, keep_serving: bool | None, write, logdir: Path | None = None) -> None:
    """After training: keep the dashboard up until Ctrl+C (interactive), or say it stopped and how to reopen it.

    Someone who opens the link after the demo ends must not meet "connection refused" unexplained.
    """
    if keep_serving is None:
        keep_serving = sys.stdin is not None and sys.stdin.isatty()
    url = getattr(server, "url", "")
    reopen = f"entropymon dashboard --logdir {logdir}" if logdir is not None else "entropymon dashboard"
    try:
        if keep_serving:
            write(f"training done; the dashboard keeps serving at {url} until Ctrl+C "
                  f"(later, reopen it with: {reopen})")
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown = getattr(server, "shutdown", None)
        if callable(shutdown):
            shutdown()
    write(f"dashboard stopped ({url} no longer answers); reopen it with: {reopen}")
