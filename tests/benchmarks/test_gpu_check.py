"""`benchmarks/gpu_check.py --smoke`: every step of the GPU check, on the CPU at toy sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).parents[2] / "benchmarks" / "gpu_check.py"


def test_smoke_run_passes_every_step_and_reports_the_goals(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, str(CHECK), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    report = json.loads((out / "gpu_check.json").read_text())
    statuses = {name: step["status"] for name, step in report["steps"].items()}
    assert done.returncode == 0, (statuses, done.stdout[-3000:])
    assert statuses == dict.fromkeys(
        ["environment", "cuda_tests", "bench_gpu", "sweep", "predict"], "passed")
    figures = report["figures"]
    # bench_gpu: every figure measured at 32², in both precisions.
    bench = figures["bench_gpu"]
    rows = {(r["size"], r["precision"]): r for r in bench["training"]}
    assert set(rows) == {(32, "32-true"), (32, "bf16-mixed")}
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["step_alone_images_per_s"] > 0
        assert 0 < row["validation_share"] < 1
        assert row["gpu_utilisation_pct"] is None  # no NVIDIA GPU to sample
    assert bench["loader_images_per_s"]["32"] > 0
    assert bench["decode_ms_per_image_channel"]["32"] > 0
    assert bench["sweep"]["trials"] == 2 and bench["sweep"]["speed_up"] > 0
    assert report["goals"]["packing_speed_up"]["measured"] == bench["sweep"]["speed_up"]
    # The CUDA tests are collected and, without CUDA, skipped; none fails.
    tests = figures["cuda_tests"]
    assert tests["tests"] >= 4 and tests["skipped"] == tests["tests"]
    # Two trials each held a quarter of the advertised GPU and trained on the CPU.
    assert set(figures["sweep"]["devices"].values()) == {"cpu"}
    assert len(figures["sweep"]["devices"]) == 2
    predict = figures["predict"]
    assert predict["batch1_frames_per_s"] > 0 and predict["batch16_frames_per_s"] > 0
    assert report["goals"]["predict_batch16_over_batch1"]["measured"] == \
        predict["batch16_over_batch1"]
    log = (out / "gpu_check.log").read_text()
    assert "kp_platform.cli.main sweep run search_spaces/demo.yaml" in log


def test_a_failing_step_is_reported_and_the_check_fails(tmp_path):
    # No wheels where --wheels points: install fails, the later steps still run.
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, str(CHECK), "--smoke", "--out", str(out),
                           "--wheels", str(tmp_path / "none"), "--steps", "cuda_tests"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["steps"]["install"]["status"].startswith("failed: no wheels in")
    assert report["steps"]["cuda_tests"]["status"] == "passed"
