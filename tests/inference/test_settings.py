from __future__ import annotations

import numpy as np
import pytest
import torch

from kp_platform.errors import InputError
from kp_platform.inference import DecodeOptions, Detector, load_module, resolve_device


def test_the_commands_offer_the_accelerators_and_precisions_there_are():
    from kp_platform.cli import device_flags
    from kp_platform.inference.settings import ACCELERATORS, PRECISIONS

    assert device_flags.ACCELERATORS == ACCELERATORS
    assert device_flags.PRECISIONS == PRECISIONS


def test_auto_prefers_cuda_then_mps_then_cpu():
    mps = getattr(torch.backends, "mps", None)
    expected = ("cuda" if torch.cuda.is_available()
                else "mps" if mps is not None and mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_an_unknown_accelerator_is_an_input_error():
    with pytest.raises(InputError, match="unknown accelerator 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_an_input_error(sharp_checkpoint, tmp_path, run_kp):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    code, _, err = run_kp("predict", "--checkpoint", sharp_checkpoint, image, "--out",
                          tmp_path / "p.json", "--accelerator", "cuda")
    assert code == 2 and err == "error: --accelerator: CUDA is not available on this machine\n"


def test_decode_options_come_from_the_checkpoint_config(sharp_checkpoint):
    config = load_module(sharp_checkpoint).cfg
    options = DecodeOptions.from_config(config)
    assert options.score_threshold == config.eval.score_threshold == 0.02
    assert options.top_k == config.eval.top_k and options.stride == config.heatmap.stride


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_predictions_match_the_cpu(sharp_checkpoint, frames, monkeypatch):
    # cuDNN's default TF32 convolutions (Ampere and newer) round to 10-bit mantissas: on an H200
    # peaks moved by up to 0.007 px and near-equal scores swapped order. In float32 the GPU
    # must give the CPU's peaks; they are compared as sets, since equal scores may tie-break
    # differently.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    on_cpu = Detector.from_checkpoint(sharp_checkpoint, "cpu").predict(frames)
    on_gpu = Detector.from_checkpoint(sharp_checkpoint, "cuda").predict(frames)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        for name, points in a.items():
            assert points.shape == b[name].shape
            if len(points):
                # Each CPU peak has a GPU peak within 1e-3 px and 1e-4 in score.
                gaps = np.abs(points[:, None, :] - b[name][None, :, :])
                close = (gaps[..., :2].max(-1) < 1e-3) & (gaps[..., 2] < 1e-4)
                assert close.any(axis=1).all(), (points, b[name])
