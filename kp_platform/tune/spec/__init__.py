"""Before Ray starts: the search-space file (its typed sections and sampled parameters), and the
pre-flight that checks every configuration and data file a sweep's trials will need."""
