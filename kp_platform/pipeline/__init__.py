"""Multi-stage pipelines (pretrain on synthetic data → fine-tune on real data → evaluate).

`load_pipeline` reads and checks a pipeline file; `run_pipeline` runs its stages in order,
skipping completed ones and resuming an interrupted one.
"""

from kp_platform.pipeline.runner import run_pipeline, validate
from kp_platform.pipeline.spec import PipelineSpec, StageSpec, load_pipeline
from kp_platform.pipeline.stages import StageFailed

__all__ = ["PipelineSpec", "StageFailed", "StageSpec", "load_pipeline", "run_pipeline",
           "validate"]
