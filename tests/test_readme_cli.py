"""Every CLI subcommand has --help text and is documented in the README's CLI section."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from entropymon.cli.main import COMMANDS, run_cli

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help_text(name, capsys):
    summary = inspect.cleandoc(COMMANDS[name].__doc__ or "").split("\n\n")[0]
    assert len(summary.split()) >= 5, f"`entropymon {name}` needs a docstring that says what it does"
    assert run_cli([name, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"entropymon {name}" in shown
    assert " ".join(summary.split()[:5]) in shown  # the docstring is what --help shows


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_appears_in_the_readme(name):
    text = README.read_text(encoding="utf-8")
    assert re.search(rf"`entropymon {re.escape(name)}\b", text), (
        f"README.md does not document `entropymon {name}` (add it to the CLI section)"
    )


def test_readme_documents_the_check_exit_codes():
    from entropymon.cli.analyse import EXIT_ALERT

    text = README.read_text(encoding="utf-8")
    assert re.search(rf"exit(s)? (code )?{EXIT_ALERT}\b", text, re.I), "README must say `entropymon check` exits 3 on an alert"


def test_every_collapse_rule_is_documented_in_the_readme_with_its_defaults():
    from entropymon.analysis.alerts import RULES

    text = README.read_text(encoding="utf-8")
    rules = RULES.values() if isinstance(RULES, dict) else RULES
    for rule in rules:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{rule.name}` |")), None)
        assert row is not None, f"README has no row for the collapse rule {rule.name}"
        for parameter, value in rule.defaults.items():
            assert f"{parameter}={value}" in row, f"README row of {rule.name} does not show {parameter}={value}"
