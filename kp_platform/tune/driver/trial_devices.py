"""How many devices a sweep trial trains on, and what it asks of Ray for them.

`resources.gpu` is the one place a sweep says how many GPUs a trial gets:

- a fraction (0.25) packs trials onto one GPU; each trains on one device;
- a whole number N > 1 runs the trial on N GPUs with Lightning DDP inside the trial: rank 0 is
  the trial's own process (it reports to Tune, writes checkpoints and the wandb run), ranks
  1..N-1 are spawned next to it (`kp_platform.training.distributed`) and see the same N GPUs
  (Ray sets `CUDA_VISIBLE_DEVICES` for the trial);
- `trainer.devices: D` with `trainer.accelerator: cpu` runs D CPU processes, with at least D
  CPUs in `resources.cpu`.

`resources.accelerator_type` pins trials to nodes with that GPU type through Ray's
`accelerator_type:<TYPE>` node resource.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kp_platform.config import Config
from kp_platform.errors import InputError
from kp_platform.tune.spec.space import SweepSpec

# Asking for a sliver of the node's `accelerator_type:<TYPE>` resource (1 on a node with such
# GPUs) places the trial there without limiting how many trials share the node.
_TYPE_SHARE = 0.001


def type_resource(accelerator_type: str) -> str:
    """Ray's node resource for a GPU type: `accelerator_type:A100`."""
    return f"accelerator_type:{accelerator_type}"


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """The per-trial request for `tune.with_resources`."""
    request = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    if spec.resources.accelerator_type:
        request[type_resource(spec.resources.accelerator_type)] = _TYPE_SHARE
    return request


def trial_base(spec: SweepSpec) -> Config:
    """The base config with `trainer.devices` set to the trial's GPUs (N >= 1 whole GPUs)."""
    check_trial_devices(spec)
    gpus = spec.resources.gpu
    if gpus >= 1:
        trainer = dataclasses.replace(spec.base.trainer, devices=int(gpus))
        return dataclasses.replace(spec.base, trainer=trainer)
    return spec.base


def check_trial_devices(spec: SweepSpec) -> None:
    """Checks `trainer.devices` / `trainer.accelerator` of the base config against `resources`.

    Raises:
        InputError: naming the space file and the setting.
    """
    gpus, cpus = spec.resources.gpu, spec.resources.cpu
    trainer = spec.base.trainer
    devices = _whole(trainer.devices)
    source = str(spec.path)
    if gpus > 1 and gpus != int(gpus):
        raise InputError(f"resources.gpu: a trial on several GPUs takes whole GPUs, got {gpus:g}",
                         source)
    if gpus >= 1:
        if devices is not None and devices != int(gpus):
            raise InputError(f"base config: trainer.devices is {devices} but resources.gpu gives "
                             f"each trial {int(gpus)} GPU(s); leave trainer.devices at auto",
                             source)
        # trainer.accelerator: cpu stays allowed: trials that only hold GPUs (benchmarks and
        # tests simulate packing that way).
        return
    if devices is not None and devices > 1:
        if gpus > 0:
            raise InputError(f"base config: trainer.devices is {devices} but a trial gets "
                             f"{gpus:g} of a GPU; ask for resources.gpu: {devices}", source)
        if trainer.accelerator != "cpu":
            raise InputError(f"base config: trainer.devices is {devices} with no GPU in "
                             "resources; set trainer.accelerator: cpu or resources.gpu", source)
        if cpus < devices:
            raise InputError(f"resources.cpu is {cpus:g} but each trial runs {devices} CPU "
                             f"processes (trainer.devices); ask for resources.cpu: {devices}",
                             source)


def _whole(devices: Any) -> int | None:
    if isinstance(devices, int):
        return devices
    return int(devices) if str(devices).isdigit() else None
