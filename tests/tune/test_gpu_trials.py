"""GPU requests in sweeps, proven on the CPU: fractional packing, multi-device trials, GPU types.

The session's Ray advertises one GPU of type T4 that the machine need not have
(tests/conftest.py); the trials' configs train on the CPU, so what is tested is Ray's placement
of the requests and the trial's own multi-process path.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time

import pytest
import ray

from kp_platform.cli.main import main as kp_main
from kp_platform.errors import InputError
from kp_platform.tune import load_space
from kp_platform.tune.driver.runner import check_resources
from kp_platform.tune.driver.trial_devices import check_trial_devices, trial_base, trial_resources
from tests.tune.conftest import space_data, write_space


def _sweep(root, data):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = kp_main(["sweep", "run", str(write_space(root / f"{data['name']}.yaml", data))])
    return code, stderr.getvalue()


def _intervals(experiment):
    """(start, end) per trial: its config.yaml is written first, metrics.json last."""
    spans = []
    for trial in sorted(experiment.glob("trial_*")):
        spans.append(((trial / "config.yaml").stat().st_mtime,
                      (trial / "metrics.json").stat().st_mtime))
    return spans


def test_quarter_gpu_trials_pack_four_at_once_and_the_fifth_waits(ray_session, synth_data,
                                                                   tmp_path):
    data = space_data(synth_data, tmp_path / "sweeps", name="packed", scheduler="fifo",
                      num_samples=5, max_concurrent=5, resources={"cpu": 0.25, "gpu": 0.25},
                      asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 3})
    free_gpu: list[float] = []
    done = threading.Event()

    def watch() -> None:  # Ray's own count of the GPU its trials hold
        while not done.is_set():
            free_gpu.append(ray.available_resources().get("GPU", 0.0))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code, err = _sweep(tmp_path, data)
    finally:
        done.set()
        watcher.join()
    assert code == 0, err
    # At some moment four trials held a quarter each (CPU alone would allow 8: 0.25 of 2).
    assert min(free_gpu) == 0.0
    spans = _intervals(tmp_path / "sweeps" / "packed")
    assert len(spans) == 5
    last_start = max(start for start, _ in spans)
    first_four = sorted(spans)[:4]
    assert last_start >= min(end for _, end in first_four)  # the fifth waited for a quarter


def test_a_trial_on_two_cpu_processes_reports_once_per_evaluation(ray_session, synth_data,
                                                                  tmp_path):
    data = space_data(synth_data, tmp_path / "sweeps", name="ddp", scheduler="fifo",
                      num_samples=1, max_concurrent=1, resources={"cpu": 2, "gpu": 0},
                      asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 2})
    data["base"]["overrides"].update({"trainer.devices": 2, "data.batch_size": 4})
    code, err = _sweep(tmp_path, data)
    assert code == 0, err
    (trial,) = sorted((tmp_path / "sweeps" / "ddp").glob("trial_*"))
    reports = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    # Rank 0 alone reports (rank 1 is outside Tune's session: a report there fails the trial).
    assert [r["epoch"] for r in reports] == [1, 2]
    metrics = json.loads((trial / "metrics.json").read_text())
    assert metrics["last"]["num_images"] == 8  # each validation image once across 2 ranks
    assert reports[-1]["val/map"] == pytest.approx(metrics["last"]["map"], rel=1e-6)
    assert (trial / "checkpoints" / "best.ckpt").is_file()
    assert "devices: 2" in (trial / "config.yaml").read_text()


def test_an_unknown_gpu_type_is_refused_and_a_known_one_accepted(ray_session, synth_data,
                                                                 tmp_path, run_kp):
    data = space_data(synth_data, tmp_path / "sweeps",
                      resources={"cpu": 1, "gpu": 0.5, "accelerator_type": "A100"})
    path = write_space(tmp_path / "space.yaml", data)
    code, _, err = run_kp("sweep", "run", path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {path}: resources: a trial asks for 1 CPU and 0.5 GPU of "
                          "type A100 but no node of the Ray cluster has that")
    assert "'accelerator_type:T4': 1.0" in err
    assert not (tmp_path / "sweeps").exists()
    data["resources"]["accelerator_type"] = "T4"
    spec = load_space(write_space(tmp_path / "t4.yaml", data))
    check_resources(spec)  # no error
    assert trial_resources(spec) == {"cpu": 1, "gpu": 0.5, "accelerator_type:T4": 0.001}


@pytest.mark.parametrize("resources,overrides,message", [
    ({"cpu": 1, "gpu": 1.5}, {"trainer.accelerator": "auto"},
     "resources.gpu: a trial on several GPUs takes whole GPUs, got 1.5"),
    ({"cpu": 1, "gpu": 2}, {"trainer.accelerator": "auto", "trainer.devices": 4},
     "trainer.devices is 4 but resources.gpu gives each trial 2 GPU(s)"),
    ({"cpu": 1, "gpu": 0}, {"trainer.devices": 2},
     "resources.cpu is 1 but each trial runs 2 CPU processes"),
    ({"cpu": 1, "gpu": 0.5}, {"trainer.devices": 2, "trainer.accelerator": "auto"},
     "trainer.devices is 2 but a trial gets 0.5 of a GPU"),
])
def test_devices_and_resources_must_agree(tmp_path, resources, overrides, message):
    data = space_data(None, tmp_path / "sweeps", resources=resources)
    data["base"]["overrides"].update(overrides)
    spec = load_space(write_space(tmp_path / "space.yaml", data))
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_trial_devices(spec)


def test_whole_gpus_set_the_trial_devices(tmp_path):
    data = space_data(None, tmp_path / "sweeps", resources={"cpu": 4, "gpu": 2})
    data["base"]["overrides"]["trainer.accelerator"] = "auto"
    spec = load_space(write_space(tmp_path / "space.yaml", data))
    assert trial_base(spec).trainer.devices == 2
    assert spec.base.trainer.devices == "auto"  # the spec itself is left as written


def test_a_gpu_type_needs_gpus(tmp_path):
    data = space_data(None, tmp_path / "sweeps", resources={"cpu": 1, "accelerator_type": "A100"})
    with pytest.raises(InputError, match=r"resources.accelerator_type needs resources.gpu > 0"):
        load_space(write_space(tmp_path / "space.yaml", data))
