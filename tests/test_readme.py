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


def test_every_name_the_readme_imports_exists():
    """A snippet that cannot be imported is a broken promise; check every `from entropymon... import`."""
    import importlib

    text = README.read_text()
    imports = re.findall(r"^from (entropymon[\w.]*) import ([\w, ]+)$", text, re.M)
    assert imports, "README shows no `from entropymon import ...` line"
    for module, names in imports:
        loaded = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(loaded, name), f"README imports {name} from {module}, which has no such name"


def test_every_file_the_readme_links_exists():
    text = README.read_text()
    for target in re.findall(r"\]\(((?!https?:|#)[^)]+)\)", text):
        assert (README.parent / target).exists(), f"README links to {target}, which does not exist"
