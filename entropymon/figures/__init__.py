"""Plotly figures of runs: pure builders, DataFrames or analysis results in, a Figure out.

Why one package: the static report and the dashboard draw the same quantities, and drawing them
twice gave two looks, two palettes and two ideas of which columns are pass@k. Every figure here
is pure (no Dash, no reading of files), so a test checks each trace against the numbers it was
given without a browser. ``style`` (template, labels, the empty figure), ``downsample``
(min/max decimation), one module per panel (``curves``, ``distribution``, ``law``,
``covariance``, ``diversity``) and ``overlays`` (several runs on one chart, the report's).
Needs plotly (the ``dashboard`` extra); ``import entropymon`` does not import it.
"""
