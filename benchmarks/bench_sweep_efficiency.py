"""ASHA's efficiency on the demo sweep: the trial-epochs it spends, and what it finds.

1. Draws a fixed, seeded list of configurations from `search_spaces/demo.yaml` (the base
   config first, as the sweep evaluates it), and runs all of them to `asha.max_epochs` with
   `scheduler: fifo` (no early stopping), recording every trial's AP curve and speed.
2. Replays ASHA offline on those curves (Ray's own ASHA scheduler, trials started in list
   order on `max_concurrent` slots at each trial's measured speed) for the demo's rungs and a
   grid of grace periods and reduction factors: the fraction of trial-epochs ASHA trains, and
   its regret (the no-stopping best `val/map` minus the best that ASHA's trials reached).
3. Runs the same list once with live ASHA and checks that the live rung decisions are the
   ones the replay makes when handed the live arrival order.

Goal (issue 12): the no-stopping best within 0.02 on at most 40% of the trial-epochs.

    .venv/bin/python benchmarks/bench_sweep_efficiency.py                   # 20-25 min
    .venv/bin/python benchmarks/bench_sweep_efficiency.py --configs 4 --max-epochs 4 \
        --set data.input_size=[64,64]                                       # a few minutes

The demo data is generated into `--data` (as `make demo` does) unless it is there already.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "demo.yaml"
GRID = [(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4)]  # (grace in evaluations, rf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=10, help="configurations in the list")
    parser.add_argument("--seed", type=int, default=0, help="the list's sampling seed")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="each trial's epochs (default: the demo space's asha.max_epochs)")
    parser.add_argument("--data", type=Path, default=ROOT / "demo_data",
                        help="the demo data folder (generated when missing)")
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value",
                        help="base config overrides for every trial, e.g. data.input_size=[64,64]")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the experiments here (default: a temporary folder)")
    parser.add_argument("--replay-only", action="store_true",
                        help="train nothing: replay on the experiments an earlier run kept in "
                        "--out (e.g. to try other rung settings)")
    args = parser.parse_args()
    if args.replay_only and args.out is None:
        parser.error("--replay-only needs --out")

    from kp_platform.tune.rungs import replay_asha

    ensure_demo_data(args.data)
    space = yaml.safe_load(SPACE.read_text())
    max_epochs = args.max_epochs or int(space["asha"]["max_epochs"])
    eval_every = int(space["eval_every"])
    concurrent = int(space["max_concurrent"])
    with tempfile.TemporaryDirectory(prefix="kp-sweep-eff-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        points = ([] if args.replay_only else
                  draw_configurations(space, args.configs, args.seed, args.set, args.data))
        print(f"{len(points) or 'the kept'} configurations from {SPACE.name} (seed {args.seed}), "
              f"{max_epochs} epochs each, AP every {eval_every}, {concurrent} at a time")
        started = time.perf_counter()
        fifo = (read_trials(out / "eff-fifo") if args.replay_only
                else run(space, points, "fifo", out, max_epochs, args.set, args.data))
        fifo_s = time.perf_counter() - started
        curves = {tid: dict(row["curve"]) for tid, row in fifo.items()}
        order = list(fifo)
        speed = {tid: row["seconds_per_epoch"] for tid, row in fifo.items()}
        print(f"\nfifo: {fifo_s:.0f} s; per trial (list order): best val/map, s/epoch")
        for tid in order:
            print(f"  {fifo[tid]['label']:>3}  {max(curves[tid].values()):.4f}  "
                  f"{speed[tid]:.1f}")

        print("\nASHA replayed on the fifo curves (list order, measured speeds):")
        print("  slots  grace  rf  rungs        trial-epochs   fraction  asha best  regret")
        demo = (int(space["asha"]["grace_period"]), float(space["asha"]["reduction_factor"]))
        settings = sorted({demo, *((g * eval_every, float(rf)) for g, rf in GRID)})
        replays = {}
        for slots in sorted({concurrent, 1}, reverse=True):
            for grace, rf in settings:
                if grace >= max_epochs:
                    continue
                replay = replay_asha(curves, grace_period=grace, reduction_factor=rf,
                                     max_epochs=max_epochs, max_concurrent=slots,
                                     order=order, epoch_seconds=speed)
                replays[(slots, grace, rf)] = replay
                rungs = sorted({d.rung for d in replay.decisions})
                mark = "  <- demo" if (slots, grace, rf) == (concurrent, *demo) else ""
                print(f"  {slots:>5}  {grace:>5}  {rf:g}  {str(rungs):<11}  "
                      f"{replay.epochs_spent:>4} / {replay.epochs_total:<6}  "
                      f"{replay.fraction:8.0%}  {replay.best:9.4f}  {replay.regret:+.4f}{mark}")

        live = (read_trials(out / "eff-asha") if args.replay_only
                else run(space, points, "asha", out, max_epochs, args.set, args.data))
        agree, checked = check_live_against_replay(out / "eff-asha", fifo, live, demo,
                                                   max_epochs)
        live_spent = sum(row["epochs"] for row in live.values())
        live_best = max(max(dict(row["curve"]).values(), default=0.0) for row in live.values())
        replay = replays[(concurrent, *demo)]
        print(f"\nlive ASHA: {live_spent} trial-epochs of {replay.epochs_total} "
              f"({live_spent / replay.epochs_total:.0%}), best {live_best:.4f}; its rung "
              f"decisions replayed on the fifo curves in the live arrival order: "
              f"{agree}/{checked} agree")
        print(f"demo rungs (grace {demo[0]}, rf {demo[1]:g}): {replay.fraction:.0%} of the "
              f"trial-epochs, regret {replay.regret:+.4f} (goal: <= 40%, within 0.02)")
    return 0


def ensure_demo_data(folder: Path) -> None:
    """The demo data as `make demo` makes it (same generator, sizes and seeds)."""
    from kp_platform.data.synth import generate_dataset

    for domain, count, seed in (("synthetic", 500, 0), ("real", 100, 1)):
        if not (folder / domain / "annotations.json").is_file():
            generate_dataset(folder / domain, domain, count, 128, seed)


def draw_configurations(space: dict[str, Any], count: int, seed: int, overrides: list[str],
                        data: Path) -> list[dict[str, Any]]:
    """The base config's values, then `count - 1` draws of Optuna's seeded random sampler."""
    import optuna

    from kp_platform.tune import load_space
    from kp_platform.tune.parameters import SpaceSampler

    spec = load_space(write_space(space, Path(tempfile.mkdtemp()) / "s.yaml", data), overrides)
    points = spec.points_to_evaluate()[:1]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    sampler = SpaceSampler(spec.parameters)
    for _ in range(count - len(points)):
        trial = study.ask()
        sampler(trial)
        points.append(dict(trial.params))
        study.tell(trial, 0.0)
    return points


def write_space(space: dict[str, Any], path: Path, data: Path, **settings: Any) -> Path:
    """The demo space with its base config pointed at `data`, plus `settings`."""
    space = json.loads(json.dumps(space))
    base_overrides = dict(space["base"].get("overrides") or {})
    base_overrides["data.train"] = str(data / "synthetic" / "annotations.json")
    base_overrides["data.test"] = str(data / "real" / "annotations.json")
    space["base"] = {"config": str(ROOT / space["base"]["config"]),
                     "overrides": base_overrides}
    space.update(settings)
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def run(space: dict[str, Any], points: list[dict[str, Any]], scheduler: str, out: Path,
        max_epochs: int, overrides: list[str], data: Path) -> dict[str, dict[str, Any]]:
    """Runs the list under `scheduler`; returns trial id → curve, epochs, speed, list label."""
    from kp_platform.tune import load_space
    from kp_platform.tune.runner import run_sweep

    name = f"eff-{scheduler}"
    path = write_space(
        space, out / f"{name}.yaml", data, name=name, scheduler=scheduler,
        num_samples=len(points), storage_path=str(out), wandb={"mode": "disabled"},
        search={**space["search"], "evaluate_base": False, "points_to_evaluate": points},
        asha={**space["asha"], "max_epochs": max_epochs})
    spec = load_space(path, [*overrides, "logging.wandb.mode=disabled"])
    print(f"\nrunning the list with {scheduler} ...", flush=True)
    run_sweep(spec)
    return read_trials(spec.experiment_dir)


def read_trials(experiment: Path) -> dict[str, dict[str, Any]]:
    """Trial id → curve, epochs, seconds per epoch, values and `#i` (its place in the list)."""
    from kp_platform.tune.report import collect_trials

    trials = {}
    for index, row in enumerate(collect_trials(experiment)):  # suggestion order = list order
        results = [json.loads(line) for line in
                   (experiment / f"trial_{row.trial_id}" / "result.json")
                   .read_text().splitlines() if line.strip()]
        seconds = results[-1]["time_total_s"] / max(row.epochs, 1) if results else 0.0
        trials[row.trial_id] = {"curve": row.curve, "epochs": row.epochs, "label": f"#{index}",
                                "seconds_per_epoch": seconds, "values": row.values}
    return trials


def check_live_against_replay(experiment: Path, fifo: dict[str, Any], live: dict[str, Any],
                              demo: tuple[int, float], max_epochs: int) -> tuple[int, int]:
    """Hands the fifo curves to a fresh ASHA in the live run's arrival order; counts the rung
    decisions that agree with the live ones (trials matched by their position in the list)."""
    from ray.tune.schedulers import TrialScheduler

    from kp_platform.tune.rungs import RecordingASHA, TrialRef, read_rungs

    by_label = {row["label"]: tid for tid, row in fifo.items()}
    to_fifo = {tid: by_label[row["label"]] for tid, row in live.items()}
    scheduler = RecordingASHA(log_path=None, time_attr="epoch", metric="value", mode="max",
                              grace_period=demo[0], reduction_factor=demo[1], max_t=max_epochs)
    added: set[str] = set()
    agree = 0
    decisions = read_rungs(experiment)
    for decision in decisions:
        if decision.trial_id not in added:
            scheduler.on_trial_add(None, TrialRef(decision.trial_id))
            added.add(decision.trial_id)
        value = dict(fifo[to_fifo[decision.trial_id]]["curve"])[decision.rung]
        action = scheduler.on_trial_result(None, TrialRef(decision.trial_id),
                                           {"epoch": decision.rung, "value": value})
        agree += (action == TrialScheduler.STOP) == decision.stopped
    return agree, len(decisions)


if __name__ == "__main__":
    sys.exit(main())
