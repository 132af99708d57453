"""``entropymon demo`` and ``entropymon dashboard``: the commands that start something and keep running.

Why here: both import heavy things (torch and TRL for the demo, Dash for the dashboard) only
inside the command, so the rest of the CLI stays light. The dashboard is found through its entry
point (``entropymon.plugins.load_frontend``), so the two packages never import each other:
``entropymon_dashboard`` (``dashboards/``) imports entropymon, never the reverse. The default
logdir of ``dashboard`` and ``list`` is ``./runs`` when it exists, else the sample runs that ship with entropymon: the
package ``entropymon.sample_logs`` (inside the installed package from a wheel, the repository's
``sample_logs/`` in an editable install); ``entropymon list --samples`` prints where they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from entropymon.cli import output

DEFAULT_LOGDIR = Path("runs")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def sample_logs_dir() -> Path | None:
    """The bundled sample runs (the package ``entropymon.sample_logs``); None when not installed."""
    try:
        from entropymon.sample_logs import folder
    except ImportError:
        return None
    candidate = folder()
    return candidate if candidate.is_dir() and any(candidate.rglob("run.json")) else None


def dashboard_extra_message(error: ImportError) -> str:
    """What to say when Dash or plotly is missing: the extra that installs them."""
    missing = getattr(error, "name", None) or str(error)
    return f"this needs the dashboard extra (missing module {missing!r}): pip install 'entropymon[dashboard]'"


def default_logdir(cwd: Path | None = None) -> Path:
    """``./runs`` when present, else the bundled sample runs."""
    local = (cwd or Path.cwd()) / DEFAULT_LOGDIR
    if local.is_dir():
        return local
    samples = sample_logs_dir()
    if samples is None:
        from entropymon.errors import RunNotFoundError

        raise RunNotFoundError(
            "--logdir: found no ./runs folder and no bundled sample_logs; pass --logdir DIR "
            "or run `entropymon demo` to make a run"
        )
    return samples


def dashboard(
    logdir: Annotated[Optional[Path], typer.Option(
        help="Folder of runs (default: ./runs if present, else the bundled sample runs).", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = DEFAULT_PORT,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Log every HTTP request (each open tab polls every 2 s).")] = False,
) -> None:
    """Serve the live Dash dashboard over a folder of runs.

    It follows runs while they grow. Without --logdir: ./runs when present, else the sample runs
    that ship with entropymon. Requests are not logged unless --verbose.
    """
    from entropymon.errors import IntegrationError, RunNotFoundError
    from entropymon.plugins import load_frontend

    folder = logdir if logdir is not None else default_logdir()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise RunNotFoundError(f"--logdir: expected a folder of runs, {folder} {what}")
    try:
        frontend = load_frontend()
    except ImportError as error:
        raise IntegrationError(dashboard_extra_message(error)) from None
    try:
        frontend.check_port_free(host, port)
        output.stderr.print(f"serving {folder} at http://{host}:{port} (Ctrl+C stops)", markup=False)
        frontend.serve(str(folder), host=host, port=port, verbose=verbose)
    except frontend.PortInUseError as error:
        raise frontend.PortInUseError(f"--port {port}: {host}:{port} is in use by another program "
                                      "(another dashboard?); pass --port N to serve on another port") from error


def demo(
    steps: Annotated[int, typer.Option(help="GRPO steps to train.", min=1)] = 500,
    logdir: Annotated[Path, typer.Option(help="Folder the run is written to.")] = DEFAULT_LOGDIR,
    run: Annotated[Optional[str], typer.Option(help="Run name (default: date-time-host).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    show_dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard",
                                                 help="Serve the live dashboard while training.")] = True,
    host: Annotated[str, typer.Option(help="Dashboard address.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Dashboard port.", min=1, max=65535)] = DEFAULT_PORT,
) -> None:
    """Train a tiny model with TRL's GRPO on the CPU, monitored live.

    Warm-starts a tiny language model on two-digit addition, then trains it with TRL's
    GRPOTrainer with entropymon attached, while the dashboard shows the run. Needs the torch and
    trl extras. Run in a terminal, the dashboard keeps serving after training until Ctrl+C;
    otherwise the last line says it stopped and how to reopen it (--no-dashboard skips it).
    """
    try:
        from entropymon.demo import run_demo
    except ImportError as error:
        from entropymon.errors import IntegrationError

        raise IntegrationError(f"the demo needs torch and TRL: pip install 'entropymon[trl]' ({error})") from None
    import warnings

    # transformers' own deprecation notices about arguments TRL passes are not the user's to act on
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
    # run_demo prints its progress, where the run is and the commands to look at it next
    run_demo(steps=steps, logdir=str(logdir), run=run, seed=seed, dashboard=show_dashboard, host=host, port=port)
