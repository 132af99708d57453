"""Front ends entropymon starts without importing them: found through their entry points.

Why: the dashboard (the ``entropymon_dashboard`` package, folder ``dashboards/``) is built on
entropymon's figures and readers, so it imports entropymon. For ``entropymon dashboard`` and the
demo to start it without entropymon importing the dashboard back (a cycle between the two
packages), the dashboard registers itself under the ``entropymon.frontends`` entry-point group
(see pyproject.toml) and entropymon asks the installed metadata for it by name. Nothing in
``entropymon`` names the dashboard's package; another front end can register the same way.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from types import ModuleType

FRONTENDS_GROUP = "entropymon.frontends"
DASHBOARD = "dashboard"


def load_frontend(name: str = DASHBOARD) -> ModuleType:
    """The front end registered as ``name`` (default: the Dash dashboard), imported.

    Raises ImportError naming what is missing: the registration (entropymon installed without
    its dashboard package) or a module the front end needs (Dash, plotly: the ``dashboard`` extra).
    Its module must offer ``serve(logdir, host=, port=, background=, verbose=)``,
    ``check_port_free(host, port)`` and ``PortInUseError``.
    """
    found = entry_points(group=FRONTENDS_GROUP, name=name)
    if not found:
        raise ImportError(f"no front end {name!r} registered under the {FRONTENDS_GROUP!r} entry points "
                          "(reinstall entropymon: pip install -e '.[dashboard]')", name=f"{FRONTENDS_GROUP}:{name}")
    return next(iter(found)).load()
