"""After (or beside) a sweep: the report, parameter importances, plots, the registered best
checkpoint and the dashboard."""
