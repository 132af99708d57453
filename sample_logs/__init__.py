"""The sample runs that ship with entropymon (three GRPO runs of the demo: two that collapse, at two
temperatures, and one with adaptive entropy control on which no warning fires).

Why a package: installed from a wheel they live inside ``entropymon/sample_logs``; in a checkout
(editable install) at the repository root. Importing this package finds them either way:
``folder()`` is the folder holding the runs, the default of ``entropymon list``, ``summary``
and ``dashboard`` when there is no ``./runs``; ``entropymon samples`` prints it.
"""

from pathlib import Path


def folder() -> Path:
    """The folder holding the sample runs (each a subfolder with a run.json)."""
    return Path(__file__).resolve().parent
