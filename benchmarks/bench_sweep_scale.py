"""The sweep driver's cost at scale: 1000 near-free trials through the real Tuner, the project's
Optuna searcher (PrunedAwareOptunaSearch, its sampler from `search.*`) and ASHA, on embedded Ray.

Run from the repository root (one run gives every figure):

    .venv/bin/python benchmarks/bench_sweep_scale.py                     # 1000 trials, TPE
    .venv/bin/python benchmarks/bench_sweep_scale.py --trials 50          # smoke test
    .venv/bin/python benchmarks/bench_sweep_scale.py --sampler random --n-ei-candidates 24
    .venv/bin/python benchmarks/bench_sweep_scale.py --samplers-on /tmp/kp-scale-*/sweeps/scale

`--samplers-on DIR` times the next suggestion of each sampler setting (TPE at 24 and 8
candidates, multivariate TPE, random, GP) on a copy of a finished run's study, in the same
SQLite storage, so that the settings are compared on the same 1000 trials.

Each trial reports a synthetic AP curve (a ceiling set by its sampled values, approached
exponentially) at its evaluation epochs only, with a tiny checkpoint, as a real trial does; so
the driver does everything it does for real trials (suggest, schedule, ASHA, tell Optuna,
snapshot the experiment) while the trials cost next to nothing. Printed:

- the driver's CPU time (user + system, every thread of this process) per trial;
- its resident memory after 100, 500 and 1000 finished trials (10 %, 50 %, 100 % of --trials);
- the sampler's time per suggestion with 10, 100 and 1000 finished trials (the last measured
  on the finished study, as the next suggestion would be);
- the experiment snapshots (Tune's `save_to_dir`, every TUNE_GLOBAL_CHECKPOINT_S seconds, and
  whenever a trial has reported 4 checkpoints since the last): how many, their cost with all
  trials present, and the size of what each one writes;
- the driver's CPU per trial split by where it goes: the searcher (Optuna's suggestions and the
  study writes), the snapshots, and the rest (Tune's and Ray's own bookkeeping, imports).

The last line is `driver cpu per trial: X ms; driver rss growth 100->1000 trials: Y MB; tpe
suggest at 1000: Z ms`.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kp_platform.tune import load_space  # noqa: E402
from kp_platform.tune.driver.runner import build_scheduler, build_searcher, trial_name  # noqa: E402
from kp_platform.tune.driver.searcher import PrunedAwareOptunaSearch  # noqa: E402

SPACE = {
    "optim.lr": {"loguniform": [1.0e-4, 1.0e-1]},
    "optim.weight_decay": {"loguniform": [1.0e-6, 1.0e-2]},
    "heatmap.sigma": {"uniform": [1.0, 4.0]},
    "model.width": {"int": [4, 32]},
    "model.backbone": {"choice": ["unet", "dilated_cnn"]},
    "model.depth": {"int": [2, 5], "when": {"model.backbone": "unet"}},
}
# The driver's bookkeeping, filled by TimedSearch (globals: the searcher's __dict__ is pickled).
SUGGESTS: list[tuple[int, float]] = []
FINISHED = [0]
RSS: dict[int, float] = {}
RSS_AT: tuple[int, ...] = ()
SNAPSHOTS: list[tuple[int, float]] = []
# Main-thread CPU seconds spent in the searcher (Optuna: suggest, results, completion) and in
# snapshots: the driver's CPU split by where it goes (the rest is Tune, Ray and imports).
THREAD_CPU = {"searcher": 0.0, "snapshots": 0.0}
IDLE_S = 10.0


def synthetic_trial(config: dict[str, Any], max_epochs: int, eval_every: int) -> None:
    """A trial that costs nothing: AP = ceiling * (1 - exp(-epoch / 4)) at evaluation epochs."""
    import tempfile as tmp

    from ray import tune

    lr = config["optim.lr"]
    ceiling = 0.9 * math.exp(-((math.log10(lr) + 2.5) ** 2) / 2) * (
        1.0 - 0.1 * abs(config["heatmap.sigma"] - 2.0) / 2.0)
    for epoch in range(eval_every, max_epochs + 1, eval_every):
        with tmp.TemporaryDirectory() as folder:
            Path(folder, "state.txt").write_text(str(epoch))
            tune.report({"val/map": ceiling * (1 - math.exp(-epoch / 4)), "epoch": epoch},
                        checkpoint=tune.Checkpoint.from_directory(folder))


class TimedSearch(PrunedAwareOptunaSearch):
    """The project's searcher, timing each suggestion and counting finished trials."""

    def suggest(self, trial_id: str) -> dict | None:
        start, cpu = time.perf_counter(), time.thread_time()
        config = super().suggest(trial_id)
        SUGGESTS.append((FINISHED[0], time.perf_counter() - start))
        THREAD_CPU["searcher"] += time.thread_time() - cpu
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        cpu = time.thread_time()
        super().on_trial_result(trial_id, result)
        THREAD_CPU["searcher"] += time.thread_time() - cpu

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        cpu = time.thread_time()
        super().on_trial_complete(trial_id, result, error)
        THREAD_CPU["searcher"] += time.thread_time() - cpu
        FINISHED[0] += 1
        if FINISHED[0] in RSS_AT:
            RSS[FINISHED[0]] = rss_mb()


def time_snapshots() -> None:
    """Times Tune's experiment snapshot (`TuneController.save_to_dir`) with the trial count."""
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.save_to_dir

    def timed(self: Any) -> None:
        start, cpu = time.perf_counter(), time.thread_time()
        original(self)
        SNAPSHOTS.append((len(self._trials), time.perf_counter() - start))
        THREAD_CPU["snapshots"] += time.thread_time() - cpu

    TuneController.save_to_dir = timed  # instrumentation only: the snapshot itself runs


def build_spec(args: argparse.Namespace, root: Path) -> Any:
    data = {
        "name": "scale",
        "base": {"overrides": {"trainer.accelerator": "cpu"}},
        "space": SPACE,
        "search": {"seed": 0, "startup_trials": 10, "evaluate_base": False,
                   "sampler": args.sampler, "n_ei_candidates": args.n_ei_candidates,
                   "multivariate": args.multivariate},
        "asha": {"grace_period": 2, "reduction_factor": 2, "max_epochs": 16},
        "eval_every": 2,
        "num_samples": args.trials,
        "max_concurrent": args.max_concurrent,
        "storage_path": str(root / "sweeps"),
        "checkpoint_period_s": args.checkpoint_period_s,
        "wandb": {"mode": "disabled"},
    }
    path = root / "scale.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_space(path)


def rss_mb() -> float:
    """This process's resident memory (Linux: VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def suggest_ms(finished: int) -> float | None:
    """Median time of the suggestions made with `finished` (up to +10 %) finished trials."""
    window = [s for n, s in SUGGESTS if finished <= n <= finished + max(2, finished // 10)]
    return statistics.median(window) * 1000 if window else None


SAMPLER_SETTINGS = [
    ("tpe", 24, False), ("tpe", 8, False), ("tpe", 24, True), ("random", 24, False),
    ("gp", 24, False),
]


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite study, its write-ahead log included."""
    import sqlite3

    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def compare_samplers(experiment: Path, repeats: int = 5) -> None:
    """Times one suggestion per sampler setting on a copy of a finished run's study."""
    import optuna

    from kp_platform.tune.driver.searcher import build_sampler
    from kp_platform.tune.spec.parameters import SpaceSampler
    from kp_platform.tune.spec.settings import SearchSettings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="kp-samplers-"))
    args = argparse.Namespace(sampler="tpe", n_ei_candidates=24, multivariate=False,
                              trials=1, max_concurrent=1, checkpoint_period_s=1.0)
    space = SpaceSampler(build_spec(args, root).parameters)
    # The first setting is timed twice, the first time discarded: imports and SQLAlchemy's
    # statement cache would otherwise count against it.
    for sampler, candidates, multivariate in [SAMPLER_SETTINGS[0], *SAMPLER_SETTINGS]:
        database = root / f"{sampler}-{candidates}-{multivariate}.db"
        copy_database(experiment / "optuna.db", database)  # (replaces the warm-up's copy)
        study = optuna.load_study(study_name="scale", storage=f"sqlite:///{database}",
                                  sampler=build_sampler(SearchSettings(
                                      sampler=sampler, n_ei_candidates=candidates,
                                      multivariate=multivariate, startup_trials=10)))
        finished = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                                optuna.trial.TrialState.PRUNED)))
        times, cpu = [], []
        # The GP refits on every finished trial at each suggestion: seconds each, so once.
        for _ in range(1 if sampler == "gp" else repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            trial = study.ask()
            space(trial)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # CPU time too: wall time on a shared machine includes waiting for the cores (and for
        # SQLite's fsync).
        print(f"{sampler} (n_ei_candidates {candidates}, multivariate {multivariate}) suggest "
              f"at {finished} finished: {statistics.median(times) * 1000:.0f} ms wall, "
              f"{statistics.median(cpu) * 1000:.0f} ms cpu (median of {len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random", "gp"])
    parser.add_argument("--n-ei-candidates", type=int, default=24)
    parser.add_argument("--multivariate", action="store_true")
    parser.add_argument("--max-concurrent", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--checkpoint-period-s", default=None,
                        help="seconds between experiment snapshots, or auto (default: the "
                        "sweep's own default for a local disk)")
    parser.add_argument("--samplers-on", type=Path, default=None, metavar="DIR",
                        help="only time each sampler setting on this finished run's study")
    args = parser.parse_args()
    if args.samplers_on:
        compare_samplers(args.samplers_on)
        return

    global RSS_AT
    RSS_AT = (max(1, args.trials // 10), max(1, args.trials // 2), args.trials)
    import ray
    from ray import tune

    root = Path(tempfile.mkdtemp(prefix="kp-scale-"))
    spec = build_spec(args, root)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(spec.snapshot_period())
    os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray_temp = tempfile.mkdtemp(prefix="kpray-")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=300 * 2**20, _temp_dir=ray_temp)
    time_snapshots()
    # What the driver burns doing nothing (Ray's own threads), to tell it from per-trial work.
    idle_start = cpu_seconds()
    time.sleep(IDLE_S)
    idle_rate = (cpu_seconds() - idle_start) / IDLE_S
    spec.experiment_dir.mkdir(parents=True)  # where the SQLite study goes, as in run_sweep
    search = build_searcher(spec)
    search.__class__ = TimedSearch  # same state; only adds the timing above
    trainable = tune.with_resources(
        tune.with_parameters(synthetic_trial, max_epochs=spec.asha.max_epochs,
                             eval_every=spec.eval_every),
        {"cpu": args.num_cpus / args.max_concurrent})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=search,
            scheduler=build_scheduler(spec), num_samples=spec.num_samples,
            max_concurrent_trials=spec.max_concurrent, trial_name_creator=trial_name,
            trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(spec.experiment_dir.parent),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=4, checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode),
            verbose=0),
    )
    rss_start = rss_mb()
    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    results = tuner.fit()
    cpu = cpu_seconds() - cpu_start
    wall = time.perf_counter() - wall_start
    split = dict(THREAD_CPU)
    # The next suggestion, on the finished study (as a longer sweep would ask it).
    after = []
    for i in range(5):
        start = time.perf_counter()
        search.suggest(f"extra_{i}")
        after.append(time.perf_counter() - start)
    at_end = statistics.median(after) * 1000

    n = len(results)
    stopped = sum(1 for r in results if (r.metrics or {}).get("epoch", 0) < spec.asha.max_epochs)
    print(f"trials: {n} ({stopped} stopped by ASHA), sampler {args.sampler} "
          f"(n_ei_candidates {args.n_ei_candidates}, multivariate {args.multivariate}), "
          f"max_concurrent {args.max_concurrent}, snapshot period {spec.snapshot_period()}")
    print(f"wall {wall:.0f} s ({wall / n * 1000:.0f} ms per trial); driver cpu {cpu:.1f} s")
    print(f"driver rss: start {rss_start:.0f} MB, " + ", ".join(
        f"{k} trials {v:.0f} MB" for k, v in sorted(RSS.items())))
    for k in (10, 100, 1000):
        if k < n:
            value = suggest_ms(k)
            print(f"{args.sampler} suggest at {k} finished: "
                  + ("-" if value is None else f"{value:.1f} ms"))
    print(f"{args.sampler} suggest at {n} finished: {at_end:.1f} ms (median of 5)")
    late = [s for t, s in SNAPSHOTS if t >= 0.9 * n]
    state = sorted(spec.experiment_dir.glob("experiment_state-*.json"))
    searcher_files = sorted(spec.experiment_dir.glob("searcher-state-*.pkl"))
    size = sum(p.stat().st_size for p in state[-1:] + searcher_files[-1:]) / 2**20
    print(f"snapshots: {len(SNAPSHOTS)}, {sum(s for _, s in SNAPSHOTS):.1f} s in all; with "
          f">= {int(0.9 * n)} trials {statistics.median(late) * 1000 if late else 0:.0f} ms "
          f"each (median), {size:.2f} MB written per snapshot (experiment state + searcher)")
    rest = cpu - split["searcher"] - split["snapshots"]
    print(f"idle driver (Ray's threads, measured over {IDLE_S:g} s before the sweep): "
          f"{idle_rate * 1000:.0f} ms of CPU per second, {idle_rate * wall / n * 1000:.0f} ms "
          "per trial at this run's pace")
    print(f"driver cpu per trial by where it goes: searcher (Optuna) "
          f"{split['searcher'] / n * 1000:.0f} ms, snapshots {split['snapshots'] / n * 1000:.0f} "
          f"ms, the rest (Tune, Ray, result loggers, imports) {rest / n * 1000:.0f} ms")
    low, high = RSS_AT[0], RSS_AT[2]
    growth = RSS.get(high, math.nan) - RSS.get(low, math.nan)
    print(f"driver cpu per trial: {cpu / n * 1000:.0f} ms; driver rss growth {low}->{high} "
          f"trials: {growth:.0f} MB; {args.sampler} suggest at {n}: {at_end:.0f} ms")
    ray.shutdown()
    import shutil

    shutil.rmtree(ray_temp, ignore_errors=True)
    print(f"experiment (for --samplers-on): {spec.experiment_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
