"""wandb, offline-first: the mode actually used, the Lightning logger, and model artifacts.

Online only when asked for *and* credentials exist; otherwise offline (runs land in
`<run_dir>/wandb/offline-run-*`, synced later with `wandb sync`). Never a prompt, never a wait.
"""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path
from typing import Any

from kp_platform.errors import ExternalError, first_line

MODES = ("online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"
"""In a run directory: the id of its one wandb run."""
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
    # wandb applies its silent setting at setup; set up now, before Lightning's logger passes
    # `anonymous=None`, which wandb's settings check would otherwise warn about on the terminal.
    import wandb

    wandb.setup()
    run_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        id=run_id(run_dir),
        resume="allow",  # `wandb sync` uploads a resumed run's offline parts in order
        name=name or run_dir.name,
        save_dir=str(run_dir),
        project=wandb_cfg.project,
        entity=wandb_cfg.entity,
        group=wandb_cfg.group,
        job_type=job_type,
        mode=mode,
        config=config,
    )


def run_id(run_dir: Path) -> str:
    """The wandb run id of a run directory, made on first use and kept in `wandb_run_id`.

    One run directory is one wandb run: `kp train --resume`, a retried sweep trial and a trial
    of a restored sweep continue it rather than starting a second run.
    """
    id_file = run_dir / RUN_ID_FILE
    if not id_file.is_file():
        id_file.write_text(uuid.uuid4().hex[:12] + "\n")
    return id_file.read_text().strip()


def start_wandb_run(logger: Any) -> Any:
    """Starts the logger's wandb run now and returns it.

    Lightning starts it lazily, mid-training; an unreachable server or refused key then ends in
    a traceback. Started here, it ends in one line instead.

    Raises:
        ExternalError: wandb could not start the run.
    """
    try:
        return logger.experiment
    except Exception as exc:  # noqa: BLE001 - wandb raises many types (network, auth, usage)
        raise ExternalError(f"cannot start the wandb run: {first_line(exc)}",
                            str(logger.save_dir)) from None


def log_model_artifact(
    run: Any, checkpoint: Path, name: str, metadata: dict[str, Any], aliases: list[str]
) -> Any:
    """Logs `checkpoint` as a wandb artifact of type `model` and returns the artifact."""
    import wandb

    artifact = wandb.Artifact(name=_artifact_name(name), type="model", metadata=metadata)
    artifact.add_file(str(checkpoint), name=checkpoint.name)
    run.log_artifact(artifact, aliases=aliases)
    return artifact


def declare_input_artifact(run: Any, init_from: str | Path, name: str | None = None) -> str:
    """Declares the checkpoint a run starts from as its input artifact (wandb lineage).

    Online, `use_artifact` links it at once. wandb refuses `use_artifact` offline, so an offline
    run records the reference in its config (`lineage.input_artifact`) for linking after sync.

    Args:
        run: The wandb run.
        init_from: `wandb:<entity>/<project>/<name>:<alias>` or a local checkpoint.
        name: The artifact a local checkpoint was logged as (default `<run name>-model`, what
            `train()` logs for the run that wrote it).

    Returns:
        The artifact reference.
    """
    text = str(init_from)
    if text.startswith("wandb:"):
        reference = text[len("wandb:"):]
    else:
        path = Path(text)
        reference = _artifact_name(name or f"{path.resolve().parent.parent.name}-model")
    if run.offline:
        run.config.update({"lineage": {"input_artifact": reference, "init_from": text}},
                          allow_val_change=True)
        return reference
    try:
        if text.startswith("wandb:"):
            run.use_artifact(reference, type="model")
        else:
            import wandb

            artifact = wandb.Artifact(name=reference, type="model")
            artifact.add_file(text, name=Path(text).name)  # same file, same digest: same version
            run.use_artifact(artifact)
    except Exception as exc:  # noqa: BLE001 - wandb raises many types (network, auth, usage)
        raise ExternalError(f"cannot declare the input artifact {reference!r}: "
                            f"{first_line(exc)}", text) from None
    return reference


def _artifact_name(name: str) -> str:
    # wandb artifact names allow letters, digits, dashes, underscores and dots.
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
