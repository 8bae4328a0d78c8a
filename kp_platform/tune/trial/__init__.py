"""Inside a Ray worker: one trial's sampled values over the base config, the one `train()`, and
the Lightning → Tune report per evaluation."""
