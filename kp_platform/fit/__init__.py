"""`kp fit`: from a labelled data set and a time budget to the best detector that budget buys.

`inspect` reads the data (image sizes, channels, instances per image, flip pairs its names
suggest), `calibrate` times one short training run on the resources the trials get, `plan`
turns both into a normal sweep file (base config, search space, ASHA's rungs, the trial count
and the sweep's time limit), and `run` runs that sweep and evaluates, renders and reports its
best checkpoint. Everything `kp fit` decides is in the sweep file it writes.
"""

from kp_platform.fit.budget import format_duration, parse_duration

__all__ = ["format_duration", "parse_duration"]
