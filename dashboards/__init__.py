"""entropymon's Dash dashboard: browse live runs, compare them, drill down to tokens.

``create_app(logdir)`` builds the app; ``serve(logdir, host="127.0.0.1", port=8050,
background=False, debug=False, verbose=False)`` runs it (``entropymon dashboard`` calls it). Figure builders
(``fig_*`` modules, ``tokens_view``) are pure: DataFrame in, Figure or components out.
Never imports torch.
"""

from entropymon_dashboard.app import DashboardServer, PortInUseError, check_port_free, create_app, serve

__all__ = ["DashboardServer", "PortInUseError", "check_port_free", "create_app", "serve"]
