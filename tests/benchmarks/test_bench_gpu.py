"""`benchmarks/bench_gpu.py --smoke`: every step of the GPU benchmark, on the CPU at 32²."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_gpu.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_measures_every_figure(ray_session, tmp_path):
    # In this process, on the session's Ray (it advertises the one GPU the sweeps pack onto).
    out = tmp_path / "gpu.json"
    figures = _load_bench().main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text()) == figures
    rows = {(r["size"], r["precision"]): r for r in figures["training"]}
    assert set(rows) == {(32, "32-true"), (32, "16-mixed")}
    for row in rows.values():
        assert row["images_per_s"] > 0
        assert 0 < row["validation_share"] < 1
        assert row["gpu_utilisation_pct"] is None  # no NVIDIA GPU to sample
    assert figures["decode_ms_per_image_channel"]["32"] > 0
    sweep = figures["sweep"]
    assert sweep["trials"] == 2 and sweep["packed_s"] > 0 and sweep["speed_up"] > 0
