"""Tune's status table at the end of a real sweep (`tune/driver/progress.py`)."""

from __future__ import annotations

import contextlib
import io
import re

from kp_platform.cli.main import main as kp_main
from tests.tune.conftest import space_data, write_space


def test_the_end_table_takes_a_best_trial_without_a_conditional_parameter(
        ray_session, synth_data, tmp_path):
    """heatmap.sigma is sampled only for the trial that cannot detect anything (head prior
    1e-6, AP 0), so the best trial, the base config, has no sigma. Tune's "Current best trial"
    line looked up every parameter column in the best trial's config: KeyError, after every
    trial had finished."""
    space = {
        "model.head_prior": {"choice": [0.01, 1.0e-6]},
        "heatmap.sigma": {"uniform": [1.5, 3.0], "when": {"model.head_prior": 1.0e-6}},
    }
    data = space_data(synth_data, tmp_path / "sweeps", name="conditional", space=space,
                      search={"seed": 0, "points_to_evaluate": [{"model.head_prior": 1.0e-6}]},
                      asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 1})
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = kp_main(["sweep", "run", str(write_space(tmp_path / "space.yaml", data))])
    lines = out.getvalue().splitlines()
    assert code == 0
    (header,) = [line for line in lines if line.startswith("| Trial name")]
    assert "head_prior" in header and "sigma" in header
    # The case itself: the best trial is the base config's, the one without a sigma.
    best = next(line for line in lines if line.startswith("sweep best val/map"))
    found = re.match(r"sweep best val/map: [\d.]+ \(trial (\w+)\); base config \(trial (\w+),",
                     best)
    assert found and found[1] == found[2], best


def test_tune_reads_the_drivers_slow_step_threshold():
    """Tune reads `TUNE_WARN_THRESHOLD_S` when `ray.tune` is first imported: the driver's
    modules must set it before they import Tune (a fresh interpreter, the variable unset)."""
    import os
    import subprocess
    import sys

    from kp_platform.tune.driver import SLOW_STEP_WARNING_S

    env = {k: v for k, v in os.environ.items() if k != "TUNE_WARN_THRESHOLD_S"}
    code = ("import kp_platform.tune.driver.progress\n"
            "from ray.tune.utils.util import warn_if_slow\n"
            "print(warn_if_slow.DEFAULT_THRESHOLD)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert float(out.split()[-1]) == SLOW_STEP_WARNING_S > 0.5
