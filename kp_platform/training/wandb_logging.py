"""wandb, offline-first: the mode actually used, the Lightning logger, and model artifacts.

Online only when asked for *and* credentials exist; otherwise offline (runs land in
`<run_dir>/wandb/offline-run-*`, synced later with `wandb sync`). Never a prompt, never a wait.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

MODES = ("online", "offline", "disabled")
_ALIASES = {"dryrun": "offline", "run": "online"}


def resolve_wandb_mode(configured: str) -> str:
    """The wandb mode to use: `WANDB_MODE` beats the config; online needs credentials."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or configured
    mode = _ALIASES.get(mode, mode)
    if mode not in MODES:
        mode = "offline"
    if mode == "online" and not has_wandb_credentials():
        return "offline"
    return mode


def has_wandb_credentials() -> bool:
    """An API key in the environment or a login stored in ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def build_wandb_logger(
    wandb_cfg: Any, run_dir: Path, config: dict[str, Any], job_type: str = "train",
    name: str | None = None,
) -> Any | None:
    """A Lightning WandbLogger writing under `run_dir`, or None when wandb is disabled.

    Args:
        wandb_cfg: The `logging.wandb` config section.
        run_dir: The run directory; wandb's files go to `run_dir/wandb`.
        config: The resolved config (plain data), recorded as the run's config.
        job_type: `train`, `trial`, ... (wandb's job type).
        name: The run's display name (default: the run directory's name).
    """
    mode = resolve_wandb_mode(wandb_cfg.mode)
    if mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    run_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        name=name or run_dir.name,
        save_dir=str(run_dir),
        project=wandb_cfg.project,
        entity=wandb_cfg.entity,
        group=wandb_cfg.group,
        job_type=job_type,
        mode=mode,
        config=config,
    )


def log_model_artifact(
    run: Any, checkpoint: Path, name: str, metadata: dict[str, Any], aliases: list[str]
) -> Any:
    """Logs `checkpoint` as a wandb artifact of type `model` and returns the artifact."""
    import wandb

    artifact = wandb.Artifact(name=_artifact_name(name), type="model", metadata=metadata)
    artifact.add_file(str(checkpoint), name=checkpoint.name)
    run.log_artifact(artifact, aliases=aliases)
    return artifact


def _artifact_name(name: str) -> str:
    # wandb artifact names allow letters, digits, dashes, underscores and dots.
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
