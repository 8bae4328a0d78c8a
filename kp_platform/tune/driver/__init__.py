"""The driver: the Tune loop (Ray embedded or a cluster), the Optuna searcher, ASHA with its rung
records, the driver lock, trial resources and the clean stop of trials Tune ends."""
