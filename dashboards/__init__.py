"""entropymon's Dash dashboard: browse live runs, compare them, drill down to tokens.

``create_app(logdir)`` builds the app; ``serve(logdir, host="127.0.0.1", port=8050,
background=False, debug=False, verbose=False)`` runs it (``entropymon dashboard`` calls it). The figures come
from ``entropymon.figures`` (pure builders shared with the HTML report); the run view's panels,
their ids and callback outputs are declared once in ``run_view``; ``tokens_view`` draws
completions as Dash components. Imports run one way: this package imports entropymon, never the
reverse (``entropymon dashboard`` and the demo find it through its ``entropymon.frontends``
entry point, see ``entropymon/plugins.py``). Never imports torch.
"""

from entropymon_dashboard.app import DashboardServer, PortInUseError, check_port_free, create_app, serve

__all__ = ["DashboardServer", "PortInUseError", "check_port_free", "create_app", "serve"]
