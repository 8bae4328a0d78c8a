"""The GPU check: the CUDA tests, the GPU benchmark, a packed `kp sweep` and `kp predict` on the
GPU, in one command that writes one JSON and one log.

On a machine with an NVIDIA GPU and no package index (its own Python with torch and Lightning;
the other dependencies travel as wheels that `make gpu-wheels` prepares), from the repository
root:

    python3 benchmarks/gpu_check.py --wheels .gpu/wheels --out OUT_DIR

Anywhere, the same steps on the CPU at toy sizes (`make test` runs this,
tests/benchmarks/test_gpu_check.py):

    .venv/bin/python benchmarks/gpu_check.py --smoke --out /tmp/gpu-smoke

Steps, each a child process with its own time limit (a step that fails is recorded and the next
one still runs; `--deadline` bounds the whole check):

1. `install`: the wheels into a `--target` folder that goes first on PYTHONPATH; the machine's
   own torch and Lightning stay;
2. `environment`: Python, torch, CUDA, the GPU and the versions of the libraries the sweep uses;
3. `cuda_tests`: the tests marked `gpu` (pytest -m gpu); on the GPU none may skip;
4. `bench_gpu`: `benchmarks/bench_gpu.py` (training images/s at 256² and 512² in fp32 and
   bf16-mixed, validation + AP share of an epoch, GPU utilisation, the loader and the training
   step alone, decode + metric cost, packed vs one-at-a-time sweep trials);
5. `sweep`: the demo data (`kp data synth`) and `kp sweep run search_spaces/demo.yaml` with 4
   trials at `resources.gpu: 0.25`, all running at once; every trial's `metrics.json` must
   name the device it trained on: the GPU (on the CPU in the smoke run);
6. `predict`: `kp predict --accelerator cuda` with the sweep's best checkpoint on a generated
   video, `--batch-size 16` against `--batch-size 1`, in frames/s (as `kp predict` prints
   them), beside the frames/s of reading and resizing the video alone.

OUT/gpu_check.json is rewritten after every step (figures, goals, each step's status and
seconds); OUT/gpu_check.log holds every command and its whole output. Exit status 0 when every
step passed; the goals (GPU utilisation >= 90% at 512², validation + AP <= 5% of an epoch,
packed trials >= 2x one at a time, batch 16 >= 5x batch 1) are reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEP_NAMES = ("cuda_tests", "bench_gpu", "sweep", "predict")
# Seconds each step's slowest command may take (install: 300, the small commands: 120).
STEP_LIMITS = {"cuda_tests": 240, "bench_gpu": 420, "sweep": 300, "predict": 120}
GOALS = {"gpu_utilisation_pct_512": 90.0, "validation_share": 0.05, "packing_speed_up": 2.0,
         "predict_batch16_over_batch1": 5.0}


class Check:
    """Runs the steps as child processes, logs their output, keeps the JSON current."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = args.work or self.out / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.log = (self.out / "gpu_check.log").open("w")
        self.started = time.monotonic()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true",
                    "PYTHONPATH": os.pathsep.join(filter(None, [
                        str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.report: dict[str, Any] = {"smoke": args.smoke, "steps": {}, "figures": {},
                                       "goals": {}}

    # -- running -----------------------------------------------------------------------------

    def run(self, command: list[str], limit: float) -> subprocess.CompletedProcess:
        """One command of a step, its output appended to the log; raises on failure."""
        left = self.args.deadline - (time.monotonic() - self.started)
        if left < 5:
            raise StepFailed("no time left before --deadline")
        timeout = min(limit, left)
        self.log.write(f"\n$ {' '.join(command)}\n")
        self.log.flush()
        try:
            done = subprocess.run(command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout or ""
            self.log.write(output if isinstance(output, str) else output.decode(errors="replace"))
            raise StepFailed(f"{Path(command[1]).name if len(command) > 1 else command[0]} "
                             f"ran past {timeout:.0f} s") from None
        self.log.write(done.stdout)
        self.log.flush()
        if done.returncode != 0:
            tail = [line for line in done.stdout.splitlines() if line.strip()][-3:]
            raise StepFailed(f"exit status {done.returncode}: " + " | ".join(tail))
        return done

    def step(self, name: str, function: Any) -> None:
        began = time.monotonic()
        self.log.write(f"\n===== {name} =====\n")
        try:
            figures = function()
            status = "passed"
            if figures:
                self.report["figures"][name] = figures
        except StepFailed as exc:
            status = f"failed: {exc}"
        seconds = time.monotonic() - began
        self.report["steps"][name] = {"status": status, "seconds": round(seconds, 1)}
        print(f"{name:12s} {status} ({seconds:.0f} s)", flush=True)
        self.write()

    def write(self) -> None:
        self.report["goals"] = goals(self.report["figures"])
        (self.out / "gpu_check.json").write_text(json.dumps(self.report, indent=2) + "\n")

    def kp(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kp_platform.cli.main", *args]

    # -- steps -------------------------------------------------------------------------------

    def install(self) -> dict[str, Any]:
        wheels = sorted(self.args.wheels.glob("*.whl"))
        if not wheels:
            raise StepFailed(f"no wheels in {self.args.wheels} (make gpu-wheels prepares them)")
        site = self.args.site
        shutil.rmtree(site, ignore_errors=True)
        self.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                             "--no-deps", "--no-compile", "--target", str(site),
                             *map(str, wheels)], 300)
        self.env["PYTHONPATH"] = os.pathsep.join([str(site), self.env["PYTHONPATH"]])
        self.env["PATH"] = os.pathsep.join([str(site / "bin"), self.env.get("PATH", "")])
        return {"wheels": len(wheels)}

    def environment(self) -> dict[str, Any]:
        done = self.run([sys.executable, __file__, "--describe"], 120)
        described = json.loads(done.stdout.strip().splitlines()[-1])
        if not self.args.smoke and not described["cuda"]:
            raise StepFailed("torch sees no CUDA device")
        return described

    def cuda_tests(self) -> dict[str, Any]:
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                       if "pytest.mark.gpu" in p.read_text())
        junit = self.work / "cuda_tests.xml"
        try:
            self.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu",
                                    "-p", "no:cacheprovider", f"--junitxml={junit}", *files],
                     STEP_LIMITS["cuda_tests"])
        finally:
            counts = junit_counts(junit) if junit.is_file() else None
            if counts is not None:
                self.report["figures"]["cuda_tests"] = counts
        if counts is None or counts["tests"] == 0:
            raise StepFailed("no test marked gpu was collected")
        if not self.args.smoke and counts["skipped"]:
            raise StepFailed(f"{counts['skipped']} CUDA test(s) skipped on the GPU")
        return counts

    def bench_gpu(self) -> dict[str, Any]:
        out = self.work / "bench_gpu.json"
        smoke = ["--smoke"] if self.args.smoke else []
        self.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), *smoke,
                  *shlex.split(self.args.bench_args), "--out", str(out)],
                 STEP_LIMITS["bench_gpu"])
        return json.loads(out.read_text())

    def sweep(self) -> dict[str, Any]:
        smoke = self.args.smoke
        data = self.work / "demo_data"
        sizes = ("12", "64") if smoke else ("500", "128")
        for domain, seed, count in (("synthetic", "0", sizes[0]), ("real", "1", "8")):
            self.run(self.kp("data", "synth", str(data / domain), "--domain", domain,
                                      "--num-images", count, "--image-size", sizes[1],
                                      "--seed", seed), 120)
        trials = self.args.trials
        overrides = [
            "name=gpu-demo", f"storage_path={self.work / 'sweeps'}", f"num_samples={trials}",
            f"max_concurrent={trials}", "resources.gpu=0.25",
            f"data.train={data / 'synthetic' / 'annotations.json'}",
            f"data.test={data / 'real' / 'annotations.json'}",
        ]
        if smoke:  # the CPU holds a share of a GPU that Ray advertises and the machine lacks
            overrides += ["ray.num_cpus=2", "ray.num_gpus=1", "resources.cpu=1",
                          "trainer.accelerator=cpu", "data.input_size=[32,32]",
                          "asha.max_epochs=2", "asha.grace_period=1", "eval_every=1",
                          "wandb.mode=disabled"]
        else:
            overrides += ["resources.cpu=3", "data.num_workers=2"]
        started = time.monotonic()
        self.run(self.kp("sweep", "run", "search_spaces/demo.yaml", *overrides),
                 STEP_LIMITS["sweep"])
        seconds = time.monotonic() - started
        experiment = self.work / "sweeps" / "gpu-demo"
        devices = {path.parent.name: json.loads(path.read_text()).get("device")
                   for path in sorted(experiment.glob("trial_*/metrics.json"))}
        figures = {"trials": trials, "seconds": round(seconds, 1), "devices": devices}
        expected = "cpu" if smoke else "cuda"
        if len(devices) != trials:
            raise StepFailed(f"{len(devices)} of {trials} trials left a metrics.json")
        elsewhere = {t: d for t, d in devices.items() if not str(d).startswith(expected)}
        if elsewhere:
            raise StepFailed(f"trials not on {expected}: {elsewhere}")
        return figures

    def predict(self) -> dict[str, Any]:
        checkpoint = (self.args.predict_checkpoint
                      or self.work / "sweeps" / "gpu-demo" / "best" / "best.ckpt")
        if not checkpoint.is_file():
            raise StepFailed(f"no checkpoint from the sweep step: {checkpoint}")
        video = self.work / "video.mp4"
        frames = 16 if self.args.smoke else 960
        done = self.run([sys.executable, __file__, "--write-video", str(video),
                                    "--frames", str(frames), "--input-size", "128"], 120)
        reading = json.loads(done.stdout.strip().splitlines()[-1])["frames_per_s"]
        accelerator = "cpu" if self.args.smoke else "cuda"
        rates = {}
        for batch in (1, 16):
            done = self.run(self.kp(
                "predict", "--checkpoint", str(checkpoint), str(video),
                "--out", str(self.work / f"pred{batch}.json"), "--accelerator", accelerator,
                "--batch-size", str(batch), "--workers", str(self.args.predict_workers)),
                STEP_LIMITS["predict"])
            rates[batch] = predicted_rate(done.stdout)
        return {"frames": frames, "workers": self.args.predict_workers,
                "reading_alone_frames_per_s": reading,
                "batch1_frames_per_s": rates[1], "batch16_frames_per_s": rates[16],
                "batch16_over_batch1": rates[16] / rates[1]}


class StepFailed(Exception):
    """A step's command failed or ran out of time; the message says how."""


def junit_counts(path: Path) -> dict[str, int]:
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def predicted_rate(output: str) -> float:
    """The frames/s that `kp predict` prints on its last line."""
    found = re.findall(r"([\d.]+) frames/s on", output)
    if not found:
        raise StepFailed("kp predict printed no frames/s line")
    return float(found[-1])


def goals(figures: dict[str, Any]) -> dict[str, Any]:
    """Each goal's measured value and whether it is met (None: not measured)."""
    bench = figures.get("bench_gpu") or {}
    rows = bench.get("training", [])
    util = [r["gpu_utilisation_pct"] for r in rows
            if r["size"] == 512 and r["gpu_utilisation_pct"] is not None]
    shares = [r["validation_share"] for r in rows]
    packing = (bench.get("sweep") or {}).get("speed_up")
    batching = (figures.get("predict") or {}).get("batch16_over_batch1")
    measured = {"gpu_utilisation_pct_512": min(util) if util else None,
                "validation_share": max(shares) if shares else None,
                "packing_speed_up": packing, "predict_batch16_over_batch1": batching}
    report = {}
    for key, value in measured.items():
        target = GOALS[key]
        met = None if value is None else (value <= target if key == "validation_share"
                                          else value >= target)
        report[key] = {"measured": value, "goal": target, "met": met}
    return report


# -- helpers run as child processes (they import the project's dependencies) --------------------

def describe() -> None:
    import importlib.metadata as metadata

    import torch

    versions = {}
    for name in ("torch", "torchvision", "pytorch-lightning", "timm", "ray", "optuna", "wandb",
                 "albumentations", "numpy", "opencv-python-headless"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    print(json.dumps({
        "python": sys.version.split()[0], "versions": versions, "cuda": cuda,
        "cuda_version": torch.version.cuda, "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "gpu_memory_gib": (round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
                           if cuda else None),
    }))


def write_video(path: Path, frames: int, input_size: int) -> None:
    """The benchmark video (bench_predict's), then how fast reading + resizing it alone is."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_predict import write_video as write

    from kp_platform.data.resize import resize_image
    from kp_platform.inference.sources import collect_sources, iter_frames

    write(path, frames)
    sources, rule = collect_sources([path])
    started, count = time.perf_counter(), 0
    for frame in iter_frames(sources, rule):
        resize_image(frame.pixels, (input_size, input_size), "resize")
        count += 1
    print(json.dumps({"frames_per_s": count / (time.perf_counter() - started)}))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--out", type=Path, default=Path("gpu_check"),
                        help="folder for gpu_check.json, gpu_check.log and the work files")
    parser.add_argument("--smoke", action="store_true",
                        help="the same steps on the CPU at toy sizes (what make test runs)")
    parser.add_argument("--wheels", type=Path, default=None,
                        help="install these wheels first (make gpu-wheels: .gpu/wheels)")
    parser.add_argument("--site", type=Path, default=Path("/tmp/kp-gpu-site"),
                        help="where --wheels are installed (default /tmp/kp-gpu-site)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the generated data, sweeps and predictions "
                        "(emptied first; default OUT/work)")
    parser.add_argument("--trials", type=int, default=None,
                        help="sweep trials, all at once (default 4; smoke 2)")
    parser.add_argument("--bench-args", default="",
                        help="more arguments for bench_gpu.py, e.g. '--sizes 512 --no-sweep'")
    parser.add_argument("--predict-checkpoint", type=Path, default=None,
                        help="the checkpoint kp predict runs (default: the sweep step's best)")
    parser.add_argument("--predict-workers", type=int, default=1,
                        help="kp predict --workers: reading the video beside the GPU (default 1)")
    parser.add_argument("--deadline", type=float, default=540.0,
                        help="seconds for the whole check; later steps fail when it passes")
    parser.add_argument("--steps", nargs="+", default=None, choices=STEP_NAMES,
                        help="run only these steps (install and environment always run)")
    parser.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write-video", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--input-size", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.trials = args.trials or (2 if args.smoke else 4)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.describe:
        describe()
        return 0
    if args.write_video:
        write_video(args.write_video, args.frames, args.input_size)
        return 0
    check = Check(args)
    if args.wheels is not None:
        check.step("install", check.install)
    check.step("environment", check.environment)
    for name in args.steps or STEP_NAMES:
        check.step(name, getattr(check, name))
    check.log.close()
    failed = [name for name, s in check.report["steps"].items() if s["status"] != "passed"]
    for key, goal in check.report["goals"].items():
        print(f"goal {key}: measured {goal['measured']}, goal {goal['goal']}, met {goal['met']}")
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.log'}"
          + (f"; failed: {', '.join(failed)}" if failed else "; every step passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
