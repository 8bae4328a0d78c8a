"""`kp sweep run SPACE.yaml [key=value ...] [--resume]`, `kp sweep report DIR`,
`kp sweep sync DIR`, `kp sweep dashboard DIR [--port N]`."""

from __future__ import annotations

import argparse

SWEEP_HELP = (
    "Hyperparameter sweeps: Ray Tune runs the trials (an embedded local Ray unless "
    "RAY_ADDRESS names a cluster), Optuna's TPE proposes configurations, ASHA stops weak "
    "trials on the sparse evaluations, every trial is a wandb run (job type 'trial', grouped "
    "by sweep), and the best checkpoint is registered as the wandb artifact <sweep>-best. "
    "Each action has its own --help."
)
RUN_HELP = (
    "Run a sweep from a search-space file (see search_spaces/demo.yaml; 'scheduler: fifo' "
    "turns early stopping off). Every configuration it can produce and every data file its "
    "trials read are checked before Ray starts. Trials that fail end the sweep with one "
    "'error: trial ID failed: ...' line each and exit status 1. A sweep whose experiment "
    "folder (storage_path/name) already holds a Tune experiment is restored: finished trials "
    "are kept, interrupted trials continue from their last checkpoint."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help="run, report on, sync and watch a sweep",
                                   description=SWEEP_HELP)
    # The sub-parsers inherit `kp`'s parser class: one-line usage errors, exit status 2.
    actions = parser.add_subparsers(dest="sweep_action", metavar="ACTION")
    actions.required = True

    run = actions.add_parser("run", help="run (or resume) a sweep from SPACE.yaml",
                             description=RUN_HELP)
    run.add_argument("space", metavar="SPACE.yaml", help="the search-space file")
    run.add_argument(
        "overrides", nargs="*", default=[], metavar="key=value",
        help="a sweep setting (num_samples=4, asha.max_epochs=6, storage_path=DIR) or a base "
        "config key (data.train=PATH, optim.weight_decay=0)")
    run.add_argument("--resume", action="store_true",
                     help="insist on restoring an existing experiment (an error if none)")
    run.set_defaults(func=_sweep)

    report = actions.add_parser(
        "report", help="print and plot a sweep's trials, rungs and importances",
        description="Print one row per trial of a sweep: id, status (completed, stopped "
        "(ASHA), errored), sampled values, best value of the sweep's metric and epochs, and "
        "the Optuna study's verdict; then the sweep's best against its base-config trial, "
        "ASHA's rungs (who stopped where, each rung's cut-off) and the parameter importances "
        "(fANOVA). Writes DIR/val_map.png (the sweep's metric against epoch, named after it: "
        "val_mean_px_error.png for val/mean_px_error; coloured by how each trial ended) and "
        "DIR/importances.png, and ends with where everything is.")
    report.add_argument("experiment", metavar="DIR", help="the experiment folder")
    report.add_argument("--plot", metavar="PNG", default=None,
                        help="where to write the plot (default: DIR/<metric>.png, e.g. "
                        "DIR/val_map.png)")
    report.add_argument("--brief", action="store_true",
                        help="leave out what the sweep printed while it ran: the trial table "
                        "(Tune's, at the sweep's end) and a line per trial ASHA stopped")
    report.add_argument("--out", metavar="REPORT.json", default=None,
                        help="also write the rows and curves as JSON to this file")
    report.set_defaults(func=_report)

    sync = actions.add_parser(
        "sync", help="upload a sweep's offline wandb runs",
        description="Upload a sweep's offline wandb runs (every trial and the registration "
        "run) with `wandb sync`, then link <sweep>-best to the registry named by the sweep's "
        "wandb.registry. Needs wandb credentials.")
    sync.add_argument("experiment", metavar="DIR", help="the experiment folder")
    sync.add_argument("--dry-run", action="store_true",
                      help="list the runs that would be synced, and stop")
    sync.set_defaults(func=_sync)

    dashboard = actions.add_parser(
        "dashboard", help="serve optuna-dashboard on a sweep's study (loopback only)",
        description="Serve optuna-dashboard (a live view of the study: history, parameter "
        "importances, intermediate values) on the sweep's study, SQLite or PostgreSQL, bound "
        "to 127.0.0.1 only; reach it from another machine through an SSH tunnel (ssh -N -L "
        "PORT:127.0.0.1:PORT HOST). Runs until Ctrl-C.")
    dashboard.add_argument("experiment", metavar="DIR", help="the experiment folder")
    dashboard.add_argument("--port", type=int, default=8080,
                           help="the loopback port to listen on (default 8080)")
    dashboard.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from kp_platform.tune.results.dashboard import serve_dashboard

    serve_dashboard(args.experiment, args.port)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from kp_platform.tune.driver.runner import choose_token_auth, run_sweep

    choose_token_auth()  # before anything imports Ray
    from kp_platform.tune import load_space
    from kp_platform.tune.results.summary import finish_sweep

    spec = load_space(args.space, args.overrides)
    results = run_sweep(spec, resume=args.resume)
    return finish_sweep(spec, results)


def _report(args: argparse.Namespace) -> int:
    from kp_platform.tune.results.report import make_report, write_summary

    report = make_report(args.experiment, args.plot, brief=args.brief)
    print(report.text)
    print()
    print(where_everything_is(args.experiment, report.plots))
    if args.out:
        write_summary(report.rows, args.out)
    return 0


def where_everything_is(experiment: str, plots: list) -> str:
    """The closing lines of a report: where the sweep's outputs are and how to open them."""
    from pathlib import Path

    from kp_platform.tune.experiment import BEST_DIR

    folder = Path(experiment)
    best = folder / BEST_DIR
    lines = [f"experiment:      {folder}"]
    if (best / "best.ckpt").is_file():
        lines.append(f"best checkpoint: {best / 'best.ckpt'} (its trial and score: "
                     f"{best / 'best.json'})")
    for path in sorted(best.glob("*metrics*.json")):
        lines.append(f"evaluation:      {path}")
    for path in sorted(best.glob("*.png")):
        lines.append(f"predictions:     {path} (labelled: circles; predicted: crosses)")
    lines += [f"plots:           {', '.join(str(p) for p in plots)}",
              f"wandb:           offline runs under {folder}; upload them with "
              f"`kp sweep sync {folder}`",
              f"optuna study:    `kp sweep dashboard {folder}` (optuna-dashboard, "
              "127.0.0.1 only)"]
    return "\n".join(lines)


def _sync(args: argparse.Namespace) -> int:
    from kp_platform.tune.results.registry import sync_experiment

    runs = sync_experiment(args.experiment, dry_run=args.dry_run)
    verb = "would sync" if args.dry_run else "synced"
    print(f"{verb} {len(runs)} offline wandb runs")
    for run_dir in runs:
        print(f"  {run_dir}")
    return 0
