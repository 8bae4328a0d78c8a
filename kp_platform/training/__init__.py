"""Training: `train(config, extra_callbacks)`, the one path of `kp train` and of sweep trials.

Also checkpoint reading (weights-only), `--init-from`, and offline-first wandb logging.
"""

from kp_platform.training.checkpoints import (
    checkpoint_config,
    load_init_weights,
    read_checkpoint,
    resolve_checkpoint_path,
)
from kp_platform.training.train import TrainResult, train

__all__ = [
    "TrainResult",
    "checkpoint_config",
    "load_init_weights",
    "read_checkpoint",
    "resolve_checkpoint_path",
    "train",
]
