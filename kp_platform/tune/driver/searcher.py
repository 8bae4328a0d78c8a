"""OptunaSearch that tells the study the truth about trials ASHA stopped early."""

from __future__ import annotations

import pickle
import sys
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from kp_platform.tune.spec.settings import SearchSettings


def build_sampler(search: SearchSettings) -> Any:
    """Optuna's sampler from `search.sampler` (seeded): TPE, random, or a Gaussian process.

    TPE's cost per suggestion grows with the finished trials and with `n_ei_candidates`
    (measured in benchmarks/RESULTS.md); `random` costs nothing and learns nothing.
    """
    import warnings

    import optuna

    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "gp":
        # Conditional parameters (`when:`) are sampled at random by the GP, which would warn
        # about it at every suggestion.
        return optuna.samplers.GPSampler(seed=search.seed, n_startup_trials=search.startup_trials,
                                         warn_independent_sampling=False)
    with warnings.catch_warnings():
        # multivariate and group are "experimental" in Optuna 5, and say so on every build.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=search.seed, n_startup_trials=search.startup_trials,
            n_ei_candidates=search.n_ei_candidates, multivariate=search.multivariate,
            # Conditional parameters (`when:`) need grouping for a joint model.
            group=search.multivariate)


class PrunedAwareOptunaSearch(OptunaSearch):
    """Records trials stopped before `max_epochs` as PRUNED, with their intermediate values.

    Stock OptunaSearch tells Optuna COMPLETE with the truncated AP of a trial ASHA stopped, so
    TPE takes "AP after 2 epochs" for a final score. Optuna records PRUNED when the final
    result lacks the metric, so the metric is withheld for such trials. Intermediate values are
    keyed by epoch (not Tune's report count), the same axis as ASHA's rungs.

    Args:
        max_epochs: A trial that reports this many epochs completed normally; one that ended
            before was stopped by ASHA. None (FIFO, which stops nothing): every trial that ends
            without an error is complete, with its last reported value.
        base_point: The base config's values, when the sweep evaluates them first: that trial
            gets the user attribute `base_config`, so the report can compare the sweep's best
            with its starting point.
        **kwargs: As for `OptunaSearch`.
    """

    def __init__(self, *, max_epochs: int | None, base_point: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.max_epochs = max_epochs
        self._base_point = base_point
        self._reported: dict[str, set[int]] = {}
        super().__init__(**kwargs)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            # Lets the report (and anyone reading the study) join Optuna and Tune trials.
            self._ot_trials[trial_id].set_user_attr("tune_trial_id", trial_id)
            if self._base_point is not None and config == self._base_point:
                self._ot_trials[trial_id].set_user_attr("base_config", True)
                self._base_point = None  # one base trial, even if a later point repeats it
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or self.metric not in result:
            return
        epoch = int(result["epoch"])
        if epoch not in self._reported.setdefault(trial_id, set()):
            self._reported[trial_id].add(epoch)
            self._ot_trials[trial_id].report(result[self.metric], epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if error:
            result = None  # FAIL, never COMPLETE with whatever the last report said
        elif result is not None:
            # Tune hands a trial's final report to `on_trial_complete` only.
            self.on_trial_result(trial_id, result)
        if (result is not None and self.max_epochs is not None
                and int(result.get("epoch", 0)) < self.max_epochs):
            result = {k: v for k, v in result.items() if k != self.metric}
        super().on_trial_complete(trial_id, result, error)
        # The study holds the finished trial; kept here, its handle would only grow the
        # searcher that Tune pickles into every experiment snapshot (and the driver's memory).
        self._ot_trials.pop(trial_id, None)
        self._reported.pop(trial_id, None)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore of the searcher's pickled state, or, when that file is unreadable, the
        same state rebuilt from the study.

        Tune copies its state files into the experiment folder without an atomic rename, so a
        driver killed mid-copy can leave the pickle cut short; Tune would then restart the
        experiment with an empty searcher that never suggests again (a sweep that hangs). The
        study holds all of it: the trials still running (with their Tune ids and intermediate
        values), those that ended, and the queued points to evaluate.
        """
        try:
            super().restore(checkpoint_path)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            print(f"warning: {checkpoint_path}: unreadable ({exc}); the searcher's state is "
                  "rebuilt from the Optuna study", file=sys.stderr, flush=True)
            self._rebuild_from_study()

    def _rebuild_from_study(self) -> None:
        study = self._ot_study
        self._ot_trials, self._reported, self._completed_trials = {}, {}, set()
        for frozen in study.get_trials(deepcopy=False):
            tune_id = frozen.user_attrs.get("tune_trial_id")
            if frozen.user_attrs.get("base_config"):
                self._base_point = None
            if tune_id is None:
                continue  # a queued point to evaluate, not suggested yet
            if frozen.state == optuna.trial.TrialState.RUNNING:
                # Optuna's storage id (no public accessor: tests/test_private_apis.py)
                self._ot_trials[tune_id] = optuna.trial.Trial(study, frozen._trial_id)
                self._reported[tune_id] = set(frozen.intermediate_values)
            else:
                self._completed_trials.add(tune_id)

