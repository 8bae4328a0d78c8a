"""`kp eval --render`: a grid of labelled images with a checkpoint's predictions drawn."""

from __future__ import annotations

import cv2
import numpy as np

TAB10 = [(31, 119, 180), (255, 127, 14)]  # the first two channels' colours (RGB)


def _pixels(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(np.abs(image.astype(int) - rgb) <= 3, axis=-1).sum())


def test_eval_renders_labels_and_predictions_per_channel(trained_run, synth_data, run_kp,
                                                          tmp_path):
    png = tmp_path / "grid" / "predictions.png"
    code, out, err = run_kp("eval", "--checkpoint", trained_run.last_checkpoint, "--data",
                            synth_data["val"], "--render", png)
    assert code == 0, err
    assert f"wrote {png}" in out and "mAP" in out
    image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    assert image.shape[1] > 4 * 200  # four panels a row (8 images: two rows)
    assert all(_pixels(image, colour) > 20 for colour in TAB10)


def test_render_and_the_other_modes_flags_are_refused(trained_run, synth_data, run_kp,
                                                       tmp_path):
    code, _, err = run_kp("eval", "--gt", synth_data["val"], "--pred", tmp_path / "p.json",
                          "--render", tmp_path / "g.png")
    assert code == 2 and "--render and --no-pose-prior go with --checkpoint" in err
    code, _, err = run_kp("eval", "--checkpoint", trained_run.last_checkpoint, "--data",
                          synth_data["val"], "--visible-only")
    assert code == 2 and "--visible-only and --pixel-origin go with --gt/--pred" in err
    assert not (tmp_path / "g.png").exists()


def test_a_confident_peak_is_drawn_larger_and_more_opaque_than_a_weak_one():
    from kp_platform.inference.grid import score_style

    sizes, opacities = score_style(np.array([-0.5, 0.1, 0.6, 1.0, 2.0]))
    assert sizes[0] == 15.0 and sizes[3] == sizes[4] == 100.0  # clipped to [0, 1]
    assert np.all(np.diff(sizes[:4]) > 0) and np.all(np.diff(opacities[:4]) > 0)
    assert opacities[0] == 0.25 and opacities[4] == 1.0
