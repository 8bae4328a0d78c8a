"""Multi-device training and evaluation that give the single-process answer.

`build_strategy(devices)` is the one place that picks Lightning's strategy. With more than one
device it is DDP whose rank 0 is *this* process and whose other ranks are spawned
(`InProcessRankZeroLauncher`), because each of Lightning's own launchers breaks a path here:

- subprocess DDP (`strategy="ddp"`) re-runs `sys.argv` for the other ranks: under pytest that
  is pytest, inside a Ray Tune trial it is Ray's worker script, and from `kp train` every rank
  would create a run directory of its own;
- `ddp_spawn` runs *every* rank in a child, so the caller's module and callbacks never see what
  happened (the best score, the last metrics, the epochs trained), and a Tune trial's
  `tune.report` would run in a process that is not the trial's.

With rank 0 at home, `train()`, wandb and Tune reporting work unchanged: rank 0 owns the run
directory, the wandb run and the Tune session; the spawned ranks only compute and join the
collectives. Validation uses a sampler that never pads (`kp_platform.ranks.validation_sampler`),
the loss is logged with `sync_dist`, and `KeypointAP` orders images by dataset index once
gathered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from lightning_fabric.strategies.launchers.multiprocessing import (
    _disable_module_memory_sharing,
    _GlobalStateSnapshot,
)
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.launcher import _Launcher
from torchmetrics import Metric


class InProcessRankZeroLauncher(_Launcher):
    """Runs rank 0 in the calling process and spawns ranks 1..N-1.

    Args:
        strategy: The DDP strategy whose processes this launches.
    """

    def __init__(self, strategy: DDPStrategy) -> None:
        self._strategy = strategy

    @property
    def is_interactive_compatible(self) -> bool:
        return False

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        """Runs `function` on every rank; returns rank 0's result (this process's)."""
        strategy = self._strategy
        assert strategy.cluster_environment is not None
        # A fresh port per launch: a second launch from this process (the evaluation after early
        # stopping) must not meet the first one's store, which may still hold its port.
        port = find_free_network_port()
        os.environ["MASTER_PORT"] = str(port)
        if hasattr(strategy.cluster_environment, "_main_port"):
            strategy.cluster_environment._main_port = port
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        # The children start from this process's random state, as ddp_spawn's do.
        states = _GlobalStateSnapshot.capture()
        children = mp.start_processes(
            _run_rank, args=(self, function, args, kwargs, states, torch.get_num_threads()),
            nprocs=strategy.num_processes - 1, start_method="spawn", join=False,
        )
        previous = os.environ.get("LOCAL_RANK")
        os.environ["LOCAL_RANK"] = "0"
        try:
            result = function(*args, **kwargs)
            # A child that failed has already made rank 0 fail at a collective (or will be
            # reported here): join raises ProcessRaisedException with the child's traceback.
            while not children.join():
                pass
            return result
        except BaseException:
            # Ranks that fail together (a NaN) are leaving already; end the others.
            for process in children.processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=10)
            raise
        finally:
            if previous is None:
                os.environ.pop("LOCAL_RANK", None)
            else:
                os.environ["LOCAL_RANK"] = previous
            # A later fit/validate in this process (after early stopping) starts a new group.
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()

    def kill(self, signum: Any) -> None:
        """Nothing to do: `launch` ends its children itself."""


def _run_rank(child_index: int, launcher: InProcessRankZeroLauncher, function: Callable,
              args: Any, kwargs: Any, states: _GlobalStateSnapshot, threads: int) -> None:
    """The body of spawned rank `child_index + 1`."""
    states.restore()
    if isinstance(launcher._strategy.accelerator, CPUAccelerator):
        # Shared-memory tensors of the parent would tie the ranks' weights together.
        args, kwargs = _disable_module_memory_sharing((args, kwargs))
    # Spawning put the parent's tensors in shared memory; metric states (not buffers, so not
    # unshared above) would add up twice. Fresh states here; the parent keeps its own.
    args, kwargs = apply_to_collection((args, kwargs), torch.nn.Module, _fresh_metrics)
    os.environ["LOCAL_RANK"] = str(child_index + 1)
    # As many threads as the parent (rank 0), not Lightning's cores / ranks: a CPU kernel's
    # float result can depend on its thread count, and every rank must compute as one process
    # would. (CPU DDP is for checking and small jobs; it oversubscribes the cores.)
    torch.set_num_threads(threads)
    try:
        function(*args, **kwargs)
    except FloatingPointError:
        # A NaN loss: every rank raises it together (`all_ranks_finite`) and rank 0 reports
        # it in one line; this rank leaves quietly, without a second traceback.
        os._exit(1)


def _fresh_metrics(module: torch.nn.Module) -> torch.nn.Module:
    for child in module.modules():
        if isinstance(child, Metric):
            child.reset()
    return module


class HomeRankDDPStrategy(DDPStrategy):
    """Lightning's DDP (gloo on CPUs, NCCL on GPUs) launched by `InProcessRankZeroLauncher`."""

    strategy_name = "kp_ddp"

    def _configure_launcher(self) -> None:
        self._launcher = InProcessRankZeroLauncher(self)


def build_strategy(devices: int | str, accelerator: str = "auto") -> Any:
    """The Lightning strategy for `devices` devices ("auto" for one)."""
    count = device_count(devices, accelerator)
    if count <= 1:
        return "auto"
    # find_unused_parameters stays off: every parameter of the network takes part in the loss.
    return HomeRankDDPStrategy(start_method="spawn")


def device_count(devices: int | str, accelerator: str = "auto") -> int:
    """How many processes `devices` means (an int; "auto" is one unless GPUs are asked for)."""
    if isinstance(devices, int):
        return devices
    if str(devices).isdigit():
        return int(devices)
    if (str(devices) in ("auto", "-1") and accelerator in ("auto", "gpu", "cuda")
            and torch.cuda.is_available()):
        return torch.cuda.device_count()  # Lightning's "auto" takes every GPU
    return 1
