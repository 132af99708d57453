"""The package's promises about weight: log reading, analysis, the CLI and the dashboard work on a
machine without torch, and `import entropymon` does not pull torch in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RUN = ROOT / "sample_logs" / "grpo-temp1.0"

# Makes `import torch` (and transformers / trl, which need it) fail as on a machine without them.
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "trl"}:
                raise ImportError(f"{name} is blocked: this test runs as if torch were not installed")
            return None
    sys.meta_path.insert(0, _NoTorch())
""")


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_import_entropymon_does_not_import_torch():
    result = subprocess.run([sys.executable, "-c", "import sys, entropymon; print('torch' in sys.modules)"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_logs_analysis_report_and_dashboard_work_without_torch(tmp_path):
    result = run_without_torch(f"""
        import entropymon
        from entropymon import read_run, summarize_run, fit_run_law, diagnose
        run = read_run({str(SAMPLE_RUN)!r})
        assert len(run.step_metrics) > 100 and len(run.samples) > 0
        summary = summarize_run(run, n_bootstrap=50)
        assert "trustworthy" in summary
        fit_run_law(run, n_bootstrap=50)
        diagnose(run)
        from entropymon.report.html import write_report
        from entropymon_dashboard import create_app
        create_app({str(SAMPLE_RUN.parent)!r})
        from entropymon.cli.main import run_cli
        assert run_cli(["summary", {str(SAMPLE_RUN)!r}, "--json"]) == 0
        assert run_cli(["report", {str(SAMPLE_RUN)!r}, "-o", {str(tmp_path / "r.html")!r}]) == 0
        print("ok")
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_console_script_reports_the_version():
    from entropymon import __version__

    result = subprocess.run(["entropymon", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"entropymon {__version__}"


def test_entropymon_never_imports_the_dashboard_package():
    """Imports run one way: dashboards/ -> entropymon. Every import statement of every module of
    entropymon is read (lazy ones inside functions too); the dashboard is reached only through
    its entry point."""
    import ast

    package = Path(__file__).resolve().parent.parent / "entropymon"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(package)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in {"entropymon_dashboard", "dashboards"}]
    assert len(list(package.rglob("*.py"))) > 50  # the walk saw the package
    assert offenders == []


def test_the_dashboard_is_found_through_its_entry_point():
    import entropymon_dashboard
    from entropymon.plugins import load_frontend

    frontend = load_frontend()
    assert frontend is entropymon_dashboard
    assert callable(frontend.serve) and callable(frontend.check_port_free)
    assert issubclass(frontend.PortInUseError, Exception)


def test_dashboard_command_without_a_registered_frontend_says_how_to_fix_it(monkeypatch, capsys, tmp_path):
    import entropymon.plugins
    from entropymon.cli.main import run_cli

    monkeypatch.setattr(entropymon.plugins, "entry_points", lambda **_: [])
    assert run_cli(["dashboard", "--logdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "entropymon.frontends" in err[0] and "entropymon[dashboard]" in err[0]
