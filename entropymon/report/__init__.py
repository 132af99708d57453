"""The static HTML report (``write_report``) and its pure plotly figure builders (``figures``)."""
