from __future__ import annotations

import pickle

import optuna
import pytest

from kp_platform.tune.driver.searcher import PrunedAwareOptunaSearch
from kp_platform.tune.spec.parameters import Parameter, SpaceSampler


@pytest.fixture
def search(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = PrunedAwareOptunaSearch(
        max_epochs=4, space=SpaceSampler([Parameter("optim.lr", "loguniform", (1e-4, 1e-2))]),
        metric="val/map", mode="max", study_name="s", storage=storage, seed=0)
    return searcher, tmp_path / "optuna.db"


def _run(searcher, trial_id, epochs, error=False):
    config = searcher.suggest(trial_id)
    assert 1e-4 <= config["optim.lr"] <= 1e-2
    results = [{"val/map": e / 10, "epoch": e, "training_iteration": 99} for e in epochs]
    for result in results[:-1]:
        searcher.on_trial_result(trial_id, result)
    # as Tune does: the final result goes to on_trial_complete only (errors bring none)
    if error:
        searcher.on_trial_result(trial_id, results[-1])
    searcher.on_trial_complete(trial_id, None if error else results[-1], error=error)


def test_stopped_trials_are_pruned_finished_complete_crashed_fail(search):
    searcher, database = search
    _run(searcher, "full", [2, 4])
    _run(searcher, "stopped", [2])
    _run(searcher, "crashed", [2], error=True)
    # read back from the SQLite file, as a later process would
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{database}")
    trials = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert trials["full"].state.name == "COMPLETE" and trials["full"].value == 0.4
    # Optuna keeps a pruned trial's last intermediate value; TPE ranks PRUNED apart from COMPLETE
    assert trials["stopped"].state.name == "PRUNED"
    assert trials["crashed"].state.name == "FAIL"
    # intermediate values are keyed by epoch, ASHA's axis, not Tune's report count
    assert trials["full"].intermediate_values == {2: 0.2, 4: 0.4}
    assert trials["stopped"].intermediate_values == {2: 0.2}


def test_under_fifo_a_trial_that_stopped_itself_is_complete(tmp_path):
    """FIFO stops nothing: a trial that ended before max_epochs (its own early stopping) is
    COMPLETE with its last value, never PRUNED."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = PrunedAwareOptunaSearch(
        max_epochs=None, space=SpaceSampler([Parameter("optim.lr", "loguniform", (1e-4, 1e-2))]),
        metric="val/map", mode="max", study_name="s", storage=storage, seed=0)
    _run(searcher, "full", [2, 4])
    _run(searcher, "self_stopped", [2])
    _run(searcher, "crashed", [2], error=True)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert trials["full"].state.name == "COMPLETE" and trials["full"].value == 0.4
    assert trials["self_stopped"].state.name == "COMPLETE"
    assert trials["self_stopped"].value == 0.2
    assert trials["crashed"].state.name == "FAIL"


def test_the_searcher_forgets_finished_trials(search):
    """What Tune pickles into every snapshot stays the size of the running trials: the study
    holds the finished ones."""
    searcher, _ = search
    for index in range(21):
        _run(searcher, f"t{index}", [2, 4])
    searcher.suggest("running")
    searcher.on_trial_result("running", {"val/map": 0.1, "epoch": 2})
    assert set(searcher._ot_trials) == {"running"} and set(searcher._reported) == {"running"}
    searcher.on_trial_complete("running", {"val/map": 0.3, "epoch": 4})
    assert searcher._ot_trials == {} and searcher._reported == {}
    restored = pickle.loads(pickle.dumps(searcher))  # as Tune restores it
    restored.on_trial_complete("running", {"val/map": 0.3, "epoch": 4})  # a repeat: ignored
    study = optuna.load_study(study_name="s", storage=searcher._ot_study._storage)
    assert len(study.trials) == 22 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_a_cut_short_searcher_state_is_rebuilt_from_the_study(tmp_path, capsys):
    """A driver killed while Tune copied the searcher's pickle into the experiment folder leaves
    it truncated: the resumed searcher must carry on from the study (the running trial
    continues, the next trial gets the next queued point) instead of Tune restarting with a
    searcher that never suggests again."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    points = [{"optim.lr": 1e-3}, {"optim.lr": 2e-3}, {"optim.lr": 5e-3}]
    searcher = PrunedAwareOptunaSearch(
        max_epochs=4, space=SpaceSampler([Parameter("optim.lr", "loguniform", (1e-4, 1e-2))]),
        metric="val/map", mode="max", study_name="s", storage=storage, seed=0,
        points_to_evaluate=points, base_point=points[0])
    as_created = pickle.dumps(searcher)  # what Tune keeps in tuner.pkl
    _run(searcher, "done", [2, 4])
    assert searcher.suggest("running") == points[1]
    searcher.on_trial_result("running", {"val/map": 0.2, "epoch": 2})
    state = tmp_path / "searcher-state.pkl"
    searcher.save(str(state))
    state.write_bytes(state.read_bytes()[:100])  # the copy cut short

    resumed = pickle.loads(as_created)
    resumed.restore(str(state))
    assert "rebuilt from the Optuna study" in capsys.readouterr().err
    resumed.on_trial_result("running", {"val/map": 0.2, "epoch": 2})  # Tune replays it
    resumed.on_trial_complete("running", {"val/map": 0.4, "epoch": 4})
    assert resumed.suggest("next") == points[2]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert trials["running"].state.name == "COMPLETE"
    assert trials["running"].intermediate_values == {2: 0.2, 4: 0.4}
    assert trials["done"].user_attrs["base_config"]
    assert "base_config" not in trials["next"].user_attrs
