"""The pre-flight: a bad sweep exits 2 in seconds with one line, and Ray never starts."""

from __future__ import annotations

import pytest

import kp_platform.tune.driver.runner as runner
from kp_platform.data.coco import CocoKeypoints
from kp_platform.tune import load_space
from kp_platform.tune.spec.parameters import Parameter
from kp_platform.tune.spec.preflight import preflight, space_corners
from tests.tune.conftest import space_data, write_space


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the sweep gets as far as starting Ray."""

    def refuse(spec):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(runner, "init_ray", refuse)


def _refused(run_kp, tmp_path, data, *expected):
    path = write_space(tmp_path / "space.yaml", data)
    code, out, err = run_kp("sweep", "run", path)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "sweeps").exists()
    return err


def test_missing_data_file(no_ray, run_kp, synth_data, tmp_path):
    data = space_data(synth_data, tmp_path / "sweeps")
    missing = tmp_path / "not-yet" / "annotations.json"
    data["base"]["overrides"]["data.train"] = str(missing)
    path = write_space(tmp_path / "space.yaml", data)
    err = _refused(run_kp, tmp_path, data, f"data.train: file not found: {missing}")
    assert err.startswith(f"error: {path}: ")


def test_a_sampled_data_file_is_checked(no_ray, run_kp, synth_data, tmp_path):
    data = space_data(synth_data, tmp_path / "sweeps")
    missing = str(tmp_path / "other.json")
    data["space"]["data.replay"] = {"choice": [str(synth_data["val"]), missing]}
    _refused(run_kp, tmp_path, data, f"data.replay: file not found: {missing}")


def test_data_that_fails_the_data_checks(no_ray, run_kp, synth_data, tmp_path):
    data = space_data(synth_data, tmp_path / "sweeps")
    data["base"]["overrides"]["data.channels"] = "towel.corner0:towel.nose"
    # the data file's own error, as `kp data check` and training report it
    _refused(run_kp, tmp_path, data, f"error: {synth_data['train']}: ", "towel.nose")


def test_a_sampled_value_the_trials_cannot_use(no_ray, run_kp, synth_data, tmp_path):
    data = space_data(synth_data, tmp_path / "sweeps")
    data["space"]["model.backbone"] = {"choice": ["unet_tiny", "unet_tinny"]}
    _refused(run_kp, tmp_path, data, "space: the configuration {", "model.backbone='unet_tinny'",
             "unknown backbone 'unet_tinny' (did you mean 'unet_tiny'?)")


def test_every_configuration_built_and_each_file_read_once(synth_data, tmp_path, monkeypatch):
    data = space_data(synth_data, tmp_path / "sweeps")
    data["space"].update({
        "model.backbone": {"choice": ["unet_tiny", "dilated_cnn_tiny"]},
        "heatmap.sigma": {"uniform": [1.5, 3.0], "when": {"model.backbone": "unet_tiny"}},
        "data.visible_only": {"choice": [False, True]},
    })
    spec = load_space(write_space(tmp_path / "space.yaml", data))
    reads = []
    original = CocoKeypoints.load.__func__

    def counting(cls, path, check_images=True, **options):
        reads.append(str(path))
        return original(cls, path, check_images, **options)

    monkeypatch.setattr(CocoKeypoints, "load", classmethod(counting))
    # base + lr ends x (unet_tiny x sigma ends + dilated) x visible_only
    assert preflight(spec) == 1 + 2 * (2 + 1) * 2
    assert sorted(reads) == sorted([str(synth_data["train"]), str(synth_data["val"])])


def test_space_corners_respect_conditions():
    params = [Parameter("model.backbone", "choice", ("unet", "dilated_cnn")),
              Parameter("model.depth", "int", (2, 4), (("model.backbone", ("unet",)),))]
    assert list(space_corners(params)) == [
        {"model.backbone": "unet", "model.depth": 2},
        {"model.backbone": "unet", "model.depth": 4},
        {"model.backbone": "dilated_cnn"},
    ]


def test_a_request_this_machine_cannot_hold_is_refused_before_ray(no_ray, run_kp, synth_data,
                                                                   tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `kp sweep`
    data = space_data(synth_data, tmp_path / "sweeps", resources={"cpu": 3, "gpu": 0})
    _refused(run_kp, tmp_path, data, "resources: a trial asks for 3 CPU and 0 GPU but the "
             "embedded Ray on this machine would have 2 CPU")  # ray.num_cpus: 2


def test_a_gpu_share_needs_a_gpu_the_embedded_ray_advertises(no_ray, run_kp, synth_data,
                                                             tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    data = space_data(synth_data, tmp_path / "sweeps", resources={"cpu": 1, "gpu": 0.25})
    data["ray"]["num_gpus"] = 0  # as on a machine without a GPU
    _refused(run_kp, tmp_path, data, "a trial asks for 1 CPU and 0.25 GPU but the embedded Ray "
             "on this machine would have 2 CPU and 0 GPU")
    # Advertised, the same request passes the check (and would start Ray).
    data["ray"]["num_gpus"] = 1
    path = write_space(tmp_path / "space.yaml", data)
    with pytest.raises(AssertionError, match="Ray was started"):
        run_kp("sweep", "run", path)
