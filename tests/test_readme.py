"""The README is part of the interface: its metric table must match the registry, and it must
open with the two commands a newcomer runs."""

import re
from pathlib import Path

from entropymon.registry import readme_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _between_markers(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert match, f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block"
    return match.group(1)


def test_readme_metric_table_matches_registry():
    text = README.read_text()
    assert _between_markers(text, "metrics-table").strip() == readme_table().strip(), (
        "README metric table is out of date: regenerate it with "
        "`python -c 'from entropymon.registry import readme_table; print(readme_table())'`"
    )


def test_readme_opens_with_setup_and_test_commands():
    text = README.read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert first_block, "README must open with a code block of commands"
    commands = [line for line in first_block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert "pip install torch==2.13.0" in commands[0] and "entropymon demo" in commands[0]
    assert commands[1].strip() == "bash .ci/run"
    # the test command is exactly what CI runs
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pytest" in ci
