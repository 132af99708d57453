"""The ``entropymon`` command: a thin shell over the library.

Why it looks like this: a user error (a missing run, a corrupt file, a bad option value, data
that cannot support an analysis) must read as one line, ``error: ...``, with exit code 1, never
a traceback; so the click command runs with ``standalone_mode=False`` and this module turns
every ``EntropymonError``, ``OSError`` and usage error into that line. Library warnings become
``warning: ...`` lines on stderr. The commands live in small modules and import the analysis,
pandas or torch only when they run: ``entropymon --help`` imports none of them.

Exit codes: 0 success; 1 user error; 3 ``entropymon check`` found a collapse alert; 130 Ctrl+C.
"""

from __future__ import annotations

import inspect
import sys
import warnings

import typer
from typer.exceptions import TyperException

from entropymon._version import __version__
from entropymon.cli import analyse, output, runs, serve
from entropymon.errors import EntropymonError

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="entropymon",
    help="Watch entropy collapse in RL post-training of language models: summarise, fit the "
         "law R = -a*e^H + b with an honest trust verdict, check collapse rules, import logs "
         "from TRL/TensorBoard/veRL, write HTML reports and serve the dashboard.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"entropymon {__version__}\n")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """Watch entropy collapse in RL post-training of language models."""
    if ctx.invoked_subcommand is None:
        sys.stdout.write(ctx.get_help() + "\n")


class _LateHelpCommand(typer.core.TyperCommand):
    """A command whose --help ends with text computed only when the help is shown.

    ``check --help`` lists the rule names from the rule registry; reading it when the CLI is
    built would load pandas and the analysis for every ``entropymon`` call.
    """

    late_help = None  # () -> str

    def format_help(self, ctx, formatter) -> None:
        if self.late_help is not None and not getattr(self, "_late_help_added", False):
            self.help = f"{self.help}\n\n{type(self).late_help()}"
            self._late_help_added = True
        return super().format_help(ctx, formatter)


def _register(name: str, function, late_help=None) -> None:
    """Add ``function`` as the command ``name``, its docstring as the help.

    Paragraphs are re-flowed (rich keeps a docstring's hard line breaks otherwise) and the list
    of commands shows the first one. ``late_help``: a function giving more help text, called
    only when ``--help`` is shown.
    """
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(function.__doc__ or "").split("\n\n")]
    extra = {}
    if late_help is not None:
        extra["cls"] = type(f"{name.title()}Command", (_LateHelpCommand,), {"late_help": staticmethod(late_help)})
    app.command(name, help="\n\n".join(paragraphs), short_help=paragraphs[0], **extra)(function)


def _flags_show_no_type(command) -> None:
    """Flags take no value: keep the help from showing ``--json <bool>`` as if they did.

    Recent typer versions print each option's type, flags included; an empty metavar hides it.
    """
    commands = [command, *getattr(command, "commands", {}).values()]
    help_names = (command.context_settings or {}).get("help_option_names", ["--help"])  # subcommands inherit them
    for each in commands:
        help_option = each.get_help_option(typer.Context(each, help_option_names=help_names))
        for param in [*each.params, *([help_option] if help_option is not None else [])]:
            if getattr(param, "is_flag", False):
                param.metavar = ""


COMMANDS = {
    "demo": serve.demo,
    "summary": analyse.summary,
    "fit": analyse.fit,
    "check": analyse.check,
    "report": runs.report_command,
    "import": runs.import_command,
    "compact": runs.compact_command,
    "list": runs.list_command,
    "dashboard": serve.dashboard,
}
LATE_HELP = {"check": analyse.rules_help}
for _name, _function in COMMANDS.items():
    _register(_name, _function, LATE_HELP.get(_name))


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    command = typer.main.get_command(app)
    _flags_show_no_type(command)
    previous_showwarning = warnings.showwarning
    warnings.showwarning = output.show_warning
    try:
        result = command.main(args=argv, prog_name="entropymon", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exit_:
        return exit_.exit_code
    except TyperException as error:  # usage errors: unknown option, bad value, missing argument
        ctx = getattr(error, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        output.print_error(error.format_message() + hint)
        return EXIT_USER_ERROR
    except typer.Abort:
        output.print_error("aborted")
        return EXIT_USER_ERROR
    except (EntropymonError, OSError) as error:
        output.print_error(error)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        output.print_error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = previous_showwarning


def main() -> None:
    """Console-script entry point (``entropymon = entropymon.cli.main:main``)."""
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
