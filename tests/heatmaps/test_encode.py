"""encode_heatmaps: exact sub-pixel Gaussians, max-combination, masking, chunking, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kp_platform.heatmaps import encode, encode_heatmaps, heatmap_size


def one(x: float, y: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A single keypoint as (1, 1, 1, 2) keypoints and its (1, 1, 1) mask."""
    return torch.tensor([[[[x, y]]]]), torch.ones(1, 1, 1, dtype=torch.bool)


def reference(points: list[tuple[float, float]], height: int, width: int, sigma: float,
              stride: int = 1) -> np.ndarray:
    """The untruncated definition in float64: max over keypoints of the 2-D Gaussian."""
    off = (stride - 1) / 2
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.zeros((height, width))
    for x, y in points:
        xh, yh = (x - off) / stride, (y - off) / stride
        out = np.maximum(out, np.exp(-((cols - xh) ** 2 + (rows - yh) ** 2) / (2 * sigma**2)))
    return out


def test_shape_dtype_and_stride_rounding() -> None:
    kp, mask = one(3.0, 4.0)
    out = encode_heatmaps(kp.expand(2, 3, 1, 2), mask.expand(2, 3, 1), 65, 30, 2.0, stride=4)
    assert out.shape == (2, 3, 17, 8) and out.dtype == torch.float32
    assert heatmap_size(65, 30, 4) == (17, 8)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_peak_is_the_gaussian_value_at_the_nearest_pixel_not_snapped() -> None:
    sigma = 2.0
    out = encode_heatmaps(*one(17.37, 23.81), 48, 40, sigma)[0, 0]
    expected = math.exp(-((17 - 17.37) ** 2 + (24 - 23.81) ** 2) / (2 * sigma**2))
    assert divmod(int(out.argmax()), 40) == (24, 17)
    assert float(out.max()) == pytest.approx(expected, rel=1e-6)
    assert float(out.max()) < 1.0
    on_centre = encode_heatmaps(*one(17.0, 24.0), 48, 40, sigma)[0, 0]
    assert float(on_centre[24, 17]) == 1.0


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_matches_the_definition(stride: int) -> None:
    points = [(17.37, 23.81), (5.5, 30.2), (-1.3, 2.0)]
    kp = torch.tensor([[points]])
    mask = torch.ones(1, 1, 3, dtype=torch.bool)
    height, width, sigma = 64, 48, 1.7
    ref = reference(points, *heatmap_size(height, width, stride), sigma, stride)
    exact = encode_heatmaps(kp, mask, height, width, sigma, stride, truncate=None)[0, 0]
    np.testing.assert_allclose(exact.numpy(), ref, atol=2e-6)
    truncated = encode_heatmaps(kp, mask, height, width, sigma, stride)[0, 0].numpy()
    # Truncation at 4 sigma drops tails below exp(-8), nothing else (a kept value may lose to
    # another keypoint's dropped tail by at most that much).
    np.testing.assert_allclose(truncated, ref, atol=math.exp(-8) + 1e-6)
    assert ref[truncated == 0].max() < math.exp(-8) + 1e-9


def test_truncation_is_exact_within_the_radius() -> None:
    sigma, truncate = 1.5, 3.0
    out = encode_heatmaps(*one(20.3, 19.6), 40, 40, sigma, truncate=truncate)[0, 0].numpy()
    ref = reference([(20.3, 19.6)], 40, 40, sigma)
    rows, cols = np.mgrid[0:40, 0:40]
    inside = np.maximum(abs(cols - 20.3), abs(rows - 19.6)) <= truncate * sigma
    np.testing.assert_allclose(out[inside], ref[inside], atol=2e-6)
    assert (out[~inside] == 0).all()


def test_out_buffer_is_zeroed_and_reused() -> None:
    kp, mask = one(7.3, 5.1)
    buffer = torch.full((1, 1, 12, 16), 5.0)
    result = encode_heatmaps(kp, mask, 12, 16, 1.5, out=buffer)
    assert result is buffer
    assert torch.equal(buffer, encode_heatmaps(kp, mask, 12, 16, 1.5))
    with pytest.raises(ValueError, match="out must be"):
        encode_heatmaps(kp, mask, 12, 16, 1.5, out=torch.zeros(1, 1, 12, 15))


def test_masked_and_empty_channels_are_zero() -> None:
    kp = torch.tensor([[[[10.0, 10.0], [20.0, 5.0]], [[3.0, 3.0], [float("nan"), 1.0]]]])
    mask = torch.tensor([[[False, False], [True, True]]])
    out = encode_heatmaps(kp, mask, 32, 32, 2.0, truncate=None)
    assert float(out[0, 0].abs().max()) == 0.0
    # The NaN keypoint is valid in the mask but cannot be drawn: treated as masked out.
    np.testing.assert_allclose(out[0, 1].numpy(), reference([(3.0, 3.0)], 32, 32, 2.0),
                               atol=2e-6)
    empty = encode_heatmaps(torch.zeros(2, 3, 0, 2), torch.zeros(2, 3, 0, dtype=torch.bool),
                            8, 8, 1.0)
    assert empty.shape == (2, 3, 8, 8) and float(empty.abs().max()) == 0.0


def test_overlapping_gaussians_combine_by_max() -> None:
    kp = torch.tensor([[[[10.2, 11.0], [13.1, 12.4]]]])
    both = encode_heatmaps(kp, torch.ones(1, 1, 2, dtype=torch.bool), 24, 24, 2.0)[0, 0]
    a = encode_heatmaps(kp[:, :, :1], torch.ones(1, 1, 1, dtype=torch.bool), 24, 24, 2.0)
    b = encode_heatmaps(kp[:, :, 1:], torch.ones(1, 1, 1, dtype=torch.bool), 24, 24, 2.0)
    assert torch.equal(both, torch.maximum(a, b)[0, 0])
    assert float(both.max()) <= 1.0


@settings(max_examples=25, deadline=None)
@given(
    points=st.lists(st.tuples(st.floats(-6, 40), st.floats(-6, 30)), min_size=1, max_size=6),
    sigma=st.floats(0.6, 4.0),
    stride=st.sampled_from([1, 2, 3]),
)
def test_windowed_and_dense_strategies_agree_bit_for_bit(
    points: list[tuple[float, float]], sigma: float, stride: int
) -> None:
    kp = torch.tensor([[points]], dtype=torch.float32)
    mask = torch.ones(1, 1, len(points), dtype=torch.bool)
    windowed = encode_heatmaps(kp, mask, 30, 36, sigma, stride, truncate=2.5)
    height, width = heatmap_size(30, 36, stride)
    dense = torch.zeros(1, height, width)
    off = (stride - 1) / 2
    encode._encode_dense(dense, (kp[0, :, :, 0] - off) / stride, (kp[0, :, :, 1] - off) / stride,
                         mask[0], sigma, 2.5 * sigma)
    assert torch.equal(windowed[0], dense)


@pytest.mark.parametrize("truncate", [None, 4.0])
def test_many_keypoints_are_chunked_and_match(
    monkeypatch: pytest.MonkeyPatch, truncate: float | None
) -> None:
    """K=5000 on 64x64 never builds a K x H x W stack; small chunks give the same map."""
    gen = torch.Generator().manual_seed(0)
    kp = torch.rand(1, 2, 5000, 2, generator=gen) * 64
    mask = torch.rand(1, 2, 5000, generator=gen) < 0.9
    default = encode_heatmaps(kp, mask, 64, 64, 1.5, truncate=truncate)

    sizes: list[int] = []
    chunks = encode._chunks

    def spy(total: int, size: int) -> list[slice]:
        sizes.append(size)
        return chunks(total, size)

    monkeypatch.setattr(encode, "_chunks", spy)
    monkeypatch.setattr(encode, "_MAX_TEMP_ELEMENTS", 64 * 64 * 7)
    small = encode_heatmaps(kp, mask, 64, 64, 1.5, truncate=truncate)
    assert torch.equal(small, default)
    # Every temporary is bounded: the chunks hold at most 7 maps' worth of elements.
    window = 1 if truncate is None else (math.floor(2 * truncate * 1.5) + 1) ** 2
    assert sizes and max(sizes) * (64 * 64 if truncate is None else window) <= 64 * 64 * 7


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    gen = torch.Generator().manual_seed(1)
    kp = torch.rand(3, 2, 5, 2, generator=gen) * 50
    mask = torch.rand(3, 2, 5, generator=gen) < 0.8
    cpu = encode_heatmaps(kp, mask, 50, 60, 2.0, stride=2)
    gpu = encode_heatmaps(kp.cuda(), mask.cuda(), 50, 60, 2.0, stride=2)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-6, rtol=0)
