"""The end of a sweep run (`kp sweep run`, `kp fit`): the sweep's best against its base config,
the plots, the registered best checkpoint, one line per failed trial, and the exit status."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kp_platform.tune.experiment import error_line
from kp_platform.tune.spec.space import SweepSpec


def finish_sweep(spec: SweepSpec, results: Any) -> int:
    """After the sweep: the base-vs-best line, the plots, the registered best checkpoint and one
    line per failed trial; returns the exit status (1 when a trial failed or none scored)."""
    # Imported once the sweep ran: it brings in Lightning, which a refused sweep never needs.
    from kp_platform.tune.results.registry import register_best

    errored = [r for r in results if r.error is not None]
    print(f"experiment: {spec.experiment_dir}")
    print(f"trials: {len(results)} ({len(errored)} errored)")
    report = None
    if not spec.remote_storage:  # the report reads the local experiment folder
        from kp_platform.tune.results.report import format_base_vs_best, make_report

        report = make_report(spec.experiment_dir)
        print(format_base_vs_best(report.rows, spec.metric, spec.mode))
        print(f"plots: {', '.join(str(p) for p in report.plots)}")
    best = register_best(spec, results, plots=report.plots if report else [])
    if best is None:
        print(f"no trial reported {spec.metric} with a checkpoint: nothing registered")
    else:
        print(f"registered: trial {best['trial_id']}'s best checkpoint ({spec.metric} "
              f"{best[spec.metric]:.4f}) as {best['checkpoint']}, wandb artifact "
              f"{best['artifact']}:best")
    print(f"report: kp sweep report {spec.experiment_dir}")
    return report_failures(errored) if errored or best is None else 0


def report_failures(errored: list) -> int:
    """One stderr line per failed trial (its id and its error's first line); exit status 1."""
    for result in errored:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        sys.stderr.write(f"error: trial {trial_id} failed: "
                         f"{error_line(result.path, result.error)}\n")
    return 1
