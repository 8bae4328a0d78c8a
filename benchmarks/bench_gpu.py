"""GPU benchmark: training speed, validation cost, decoding cost, packed sweep trials, utilisation.

Run from the repository root (`benchmarks/gpu_check.py` runs it as one of its steps, a few
minutes on one GPU):

    .venv/bin/python benchmarks/bench_gpu.py --out gpu.json
    .venv/bin/python benchmarks/bench_gpu.py --smoke          # CPU, tiny sizes, same code paths

It measures, on generated quads data (`kp_platform.data.quads`) and the default network:

1. training images/s at 256² and 512² in fp32 (`32-true`) and `bf16-mixed`: the last
   epoch's training part (the first warms up kernels and the loader);
2. the share of an epoch that validation + AP take (goal <= 5%), at an evaluation epoch;
3. GPU utilisation sampled during training (pynvml if installed, else `nvidia-smi`; goal >= 90%:
   the data loader must not starve the GPU), beside the two ceilings that name a bottleneck:
   the loader alone (images/s its workers deliver, no network) and the training step alone
   (forward, loss, backward and optimiser on one batch kept on the device, no loader, no
   Lightning loop);
4. peak decoding + `KeypointAP.update` on the device, in ms per image-channel;
5. a sweep of N trials (default 4) packed at `resources.gpu: 0.25` vs the same trials one at a
   time (`gpu: 1`): the speed-up of packing small trials onto one GPU.

`--smoke` runs every step on the CPU at 32² with a few images and an embedded Ray that
advertises one GPU it does not have (trials train on the CPU), so `make test` keeps the script
working (through `benchmarks/gpu_check.py --smoke`, tests/benchmarks/test_gpu_check.py).
Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

from kp_platform.config import apply_overrides, load_config
from kp_platform.config.auto import resolve_auto
from kp_platform.console import quiet_library_info
from kp_platform.data.datamodule import KeypointDataModule
from kp_platform.data.dataset import collate_keypoints
from kp_platform.data.quads import CHANNELS, generate_quads
from kp_platform.models.losses import heatmap_loss
from kp_platform.models.module import KeypointModule
from kp_platform.training import train


class EpochTimer(pl.Callback):
    """Wall time of each epoch's training part and validation part (device synchronised)."""

    def __init__(self, sampler: UtilisationSampler) -> None:
        self.sampler = sampler
        self.epochs: list[dict[str, float]] = []
        self._start = self._val_start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync()
        self._start = time.perf_counter()
        self.sampler.active = trainer.current_epoch > 0  # past the warm-up epoch

    def on_validation_epoch_start(self, trainer: pl.Trainer,
                                  pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        _sync()
        self._val_start = time.perf_counter()
        self.sampler.active = False

    def on_validation_epoch_end(self, trainer: pl.Trainer,
                                pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        _sync()
        end = time.perf_counter()
        self.epochs.append({"train_s": self._val_start - self._start,
                            "val_s": end - self._val_start})


class UtilisationSampler:
    """Samples GPU utilisation (%) every 0.2 s while `active`; nothing without an NVIDIA GPU."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.active = False
        self._stop = threading.Event()
        self._read = _utilisation_reader()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def available(self) -> bool:
        return self._read is not None

    def __enter__(self) -> UtilisationSampler:
        if self._read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self.active and self._read is not None:
                value = self._read()
                if value is not None:
                    self.samples.append(value)


def _utilisation_reader() -> Any:
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # noqa: BLE001 - pynvml missing or failing: fall back to nvidia-smi
        pass
    if shutil.which("nvidia-smi") is None:
        return None

    def read() -> float | None:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True)
        return float(out.stdout.strip()) if out.returncode == 0 else None

    return read


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_data(root: Path, size: int, train_images: int) -> dict[str, Path]:
    """Quads data at size² (validation: an eighth of the training count, at least 4)."""
    folder = root / f"quads{size}"
    return {
        "train": generate_quads(folder / "train", train_images, size, seed=0),
        "val": generate_quads(folder / "val", max(4, train_images // 8), size, seed=1),
    }


def base_overrides(data: dict[str, Path], size: int, args: argparse.Namespace) -> list[str]:
    return [
        f"data.train={data['train']}", f"data.val={data['val']}", f"data.channels={CHANNELS}",
        f"data.input_size=[{size}, {size}]", f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}", f"trainer.accelerator={args.accelerator}",
        "trainer.progress_bar=false", "logging.wandb.mode=disabled", "eval.eval_every=1",
    ]


def training_speed(data: dict[str, Path], size: int, precision: str, args: argparse.Namespace,
                   run_root: Path) -> dict[str, Any]:
    """Images/s of the last epoch's training part, its validation share, GPU utilisation."""
    config = apply_overrides(load_config(), base_overrides(data, size, args) + [
        f"trainer.precision={precision}", f"trainer.max_epochs={args.epochs}",
        f"trainer.run_root={run_root}", f"trainer.name=s{size}-{precision}"])
    with UtilisationSampler() as sampler:
        timer = EpochTimer(sampler)
        result = train(config, [timer])
    last = timer.epochs[-1]
    images = len(json.loads(Path(data["train"]).read_text())["images"])
    return {
        "size": size, "precision": precision,
        "images_per_s": images / last["train_s"],
        "validation_share": last["val_s"] / (last["train_s"] + last["val_s"]),
        "gpu_utilisation_pct": (sum(sampler.samples) / len(sampler.samples)
                                if sampler.samples else None),
        "val_map": result.metrics["last"]["map"],
    }


def loader_alone(data: dict[str, Path], size: int, args: argparse.Namespace) -> float:
    """Images/s the training loader delivers with no network: its second pass (the first
    starts the workers)."""
    config = resolve_auto(apply_overrides(load_config(), base_overrides(data, size, args)))[0]
    loader = KeypointDataModule(config.data, seed=0).train_dataloader()
    for _ in loader:
        pass
    started, images = time.perf_counter(), 0
    for batch in loader:
        images += len(batch["image"])
    return images / (time.perf_counter() - started)


def step_alone(data: dict[str, Path], size: int, precision: str,
               args: argparse.Namespace) -> float:
    """Images/s of the training step alone: forward, loss, backward and AdamW on one batch
    that stays on the device (no loader, no Lightning loop)."""
    device = _device(args)
    config = resolve_auto(apply_overrides(load_config(), base_overrides(data, size, args)))[0]
    datamodule = KeypointDataModule(config.data, seed=0)
    module = KeypointModule.from_config(config, list(datamodule.channels.names)).to(device)
    batch = next(iter(torch.utils.data.DataLoader(
        datamodule.splits.train, batch_size=args.batch_size, collate_fn=collate_keypoints)))
    batch = datamodule.on_after_batch_transfer(
        {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}, 0)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=precision == "bf16-mixed")

    def step() -> None:
        with autocast:
            logits = module(batch["image"])
        loss, _ = heatmap_loss(logits.float(), module.targets(batch), module.cfg.model.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    module.train()
    for _ in range(3):
        step()
    _sync()
    started = time.perf_counter()
    for _ in range(args.step_repeats):
        step()
    _sync()
    return args.step_repeats * len(batch["image"]) / (time.perf_counter() - started)


def _device(args: argparse.Namespace) -> torch.device:
    return torch.device("cuda" if args.accelerator != "cpu" and torch.cuda.is_available()
                        else "cpu")


def decode_cost(size: int, args: argparse.Namespace) -> float:
    """ms per image-channel of peak decoding + KeypointAP.update on the device."""
    device = _device(args)
    config = apply_overrides(load_config(), [f"data.input_size=[{size}, {size}]",
                                             f"data.channels={CHANNELS}"])
    module = KeypointModule.from_config(config, ["top", "bottom"]).to(device)
    stride = module.cfg.heatmap.stride
    generator = torch.Generator(device="cpu").manual_seed(0)
    batch, channels, side = args.batch_size, 2, size // stride
    # Smooth random logits with many peaks, and 6 ground-truth points per channel.
    logits = torch.nn.functional.avg_pool2d(
        torch.randn(batch, channels, side, side, generator=generator) * 20, 5, 1, 2).to(device)
    gt_xy = (torch.rand(batch, channels, 6, 2, generator=generator) * size).double().to(device)
    gt_mask = torch.ones(batch, channels, 6, dtype=torch.bool, device=device)
    affine = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * batch, dtype=torch.float64)

    def once() -> None:
        detections = module.decode(logits).to_original(affine)
        module.metric.update(detections.xy, detections.scores, detections.valid, gt_xy, gt_mask)

    once()
    _sync()
    started = time.perf_counter()
    for _ in range(args.repeats):
        once()
    _sync()
    module.metric.reset()
    return (time.perf_counter() - started) * 1000 / (args.repeats * batch * channels)


def sweep_packing(data: dict[str, Path], size: int, args: argparse.Namespace,
                  root: Path) -> dict[str, float]:
    """Seconds for N trials packed at gpu 0.25 and one at a time (gpu 1)."""
    import ray

    from kp_platform.tune import load_space
    from kp_platform.tune.driver.runner import run_sweep

    if not ray.is_initialized():
        # Smoke (no CUDA): advertise the GPU the trials' requests count against.
        gpus = None if torch.cuda.is_available() else 1
        ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, include_dashboard=False,
                 object_store_memory=300 * 1024 * 1024, log_to_driver=False)
    # key=value strings, parsed by the sweep as `kp train` parses them; trials share the cores.
    overrides = [*base_overrides(data, size, args), "data.num_workers=0"]
    root.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name, gpu in (("packed", 0.25), ("sequential", 1.0)):
        space = {
            "name": name, "base": {"overrides": overrides},
            "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-2]}},
            "metric": "val/map", "mode": "max", "scheduler": "fifo",
            "search": {"seed": 0, "startup_trials": 10},
            "asha": {"grace_period": 1, "reduction_factor": 2, "max_epochs": args.sweep_epochs},
            "eval_every": 1, "num_samples": args.trials, "max_concurrent": args.trials,
            "resources": {"cpu": args.trial_cpu, "gpu": gpu}, "storage_path": str(root),
            "max_failures": 0, "wandb": {"mode": "disabled"},
        }
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(space, sort_keys=False))
        started = time.perf_counter()
        results = run_sweep(load_space(path))
        seconds[name] = time.perf_counter() - started
        if results.errors:
            raise RuntimeError(f"{name} sweep: {len(results.errors)} trial(s) failed")
    return {"trials": args.trials, "packed_s": seconds["packed"],
            "sequential_s": seconds["sequential"],
            "speed_up": seconds["sequential"] / seconds["packed"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, 32², a few images")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="input sides to train at (default 256 512; smoke 32)")
    parser.add_argument("--no-sweep", action="store_true",
                        help="leave out the packed vs one-at-a-time sweep")
    args = parser.parse_args(argv)
    full = not args.smoke
    args.sizes = args.sizes or ([256, 512] if full else [32])
    args.train_images = {size: max(16, 2**18 // size) if full else 16 for size in args.sizes}
    args.batch_size = 32 if full else 8
    # Every core but two (the main process and the GPU's feeder thread) decodes images.
    args.workers = max(1, min(14, (os.cpu_count() or 1) - 2)) if full else 0
    args.accelerator = "auto" if full else "cpu"
    args.epochs = 3 if full else 2
    args.repeats = 50 if full else 3
    args.step_repeats = 20 if full else 2
    args.trials = args.trials or (4 if full else 2)
    args.trial_cpu = 1.0 if full else 0.25
    args.sweep_epochs = 3 if full else 1
    args.sweep_images = 256 if full else 16
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    quiet_library_info()  # what `kp` shows: no Lightning banner or deprecation noise
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "smoke": args.smoke, "training": [], "loader_images_per_s": {},
        "decode_ms_per_image_channel": {},
    }
    with tempfile.TemporaryDirectory(prefix="kp-bench-gpu-") as tmp:
        root = Path(tmp)
        for size in args.sizes:
            data = make_data(root, size, args.train_images[size])
            loader = loader_alone(data, size, args)
            figures["loader_images_per_s"][str(size)] = loader
            print(f"loader alone {size}²: {loader:8.1f} images/s with {args.workers} workers",
                  flush=True)
            for precision in ("32-true", "bf16-mixed"):
                row = training_speed(data, size, precision, args, root / "runs")
                row["step_alone_images_per_s"] = step_alone(data, size, precision, args)
                figures["training"].append(row)
                util = row["gpu_utilisation_pct"]
                print(f"train {size}² {precision:10s}: {row['images_per_s']:8.1f} images/s "
                      f"(step alone {row['step_alone_images_per_s']:.1f}), validation + AP "
                      f"{100 * row['validation_share']:5.1f}% of the epoch, GPU utilisation "
                      f"{'n/a' if util is None else f'{util:.0f}%'}", flush=True)
            ms = decode_cost(size, args)
            figures["decode_ms_per_image_channel"][str(size)] = ms
            print(f"decode + metric update {size}²: {ms:.3f} ms per image-channel", flush=True)
        if not args.no_sweep:
            smallest = args.sizes[0]
            packing = sweep_packing(make_data(root / "sweep_data", smallest, args.sweep_images),
                                    smallest, args, root / "sweeps")
            figures["sweep"] = packing
            print(f"sweep of {packing['trials']} trials: packed at gpu 0.25 "
                  f"{packing['packed_s']:.1f} s, one at a time {packing['sequential_s']:.1f} s, "
                  f"speed-up {packing['speed_up']:.2f}x", flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
