"""Reading checkpoints safely and starting from another run's weights (`--init-from`).

Every load uses `torch.load(..., weights_only=True)`: a checkpoint holds tensors and plain data
(the resolved config as a dict), so nothing in it can execute code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from kp_platform.errors import InputError

WANDB_PREFIX = "wandb:"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a Lightning checkpoint on the CPU with `weights_only=True`.

    Raises:
        InputError: missing, unreadable, not a checkpoint, or holding pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", str(path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot load as a safe (weights-only) checkpoint: {reason}", str(path)
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError("not a kp_platform checkpoint (no 'state_dict')", str(path))
    return checkpoint


def checkpoint_config(checkpoint: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The resolved config and channel names a checkpoint was trained with."""
    hparams = checkpoint.get("hyper_parameters") or {}
    if "config" not in hparams or "channel_names" not in hparams:
        raise InputError("checkpoint lacks its config and channel names", source)
    config = hparams["config"]
    model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict) and "max_width" not in model:
        # Written before `model.max_width` existed, when the unet's channels doubled uncapped.
        config = {**config, "model": {**model, "max_width": None}}
    return config, list(hparams["channel_names"])


def resolve_checkpoint_path(spec: str | Path) -> Path:
    """A local checkpoint path for `PATH` or `wandb:<entity>/<project>/<name>:<alias>`.

    A wandb artifact is downloaded with the public API (needs wandb online and credentials).
    """
    text = str(spec)
    if not text.startswith(WANDB_PREFIX):
        return Path(text)
    name = text[len(WANDB_PREFIX) :]
    try:
        import wandb

        artifact = wandb.Api().artifact(name, type="model")
        folder = Path(artifact.download(root=tempfile.mkdtemp(prefix="kp-artifact-")))
    except Exception as exc:  # noqa: BLE001 - wandb raises many types offline
        raise InputError(
            f"cannot fetch wandb artifact: {str(exc).splitlines()[0]}", text
        ) from None
    found = sorted(folder.rglob("*.ckpt"))
    if not found:
        raise InputError("the wandb artifact holds no .ckpt file", text)
    return found[0]


def load_init_weights(module: torch.nn.Module, spec: str | Path) -> dict[str, int]:
    """Copies matching weights from a checkpoint into `module`; hyperparameters are untouched.

    Tensors whose name or shape differ (e.g. a head for other channels) are skipped and counted.

    Returns:
        {"loaded": n, "skipped": m}.

    Raises:
        InputError: the checkpoint cannot be read or shares no weight with the module.
    """
    path = resolve_checkpoint_path(spec)
    state = read_checkpoint(path)["state_dict"]
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise InputError("no weight in the checkpoint fits this model", str(spec))
    module.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": len(own) - len(usable)}
