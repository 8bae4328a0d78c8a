"""Prepares the wheels that `benchmarks/gpu_check.py` installs on a GPU machine without network.

Run from the repository root (`make gpu-wheels` does):

    python3 benchmarks/gpu_bundle.py --out .gpu/wheels

The GPU machine this is for runs its own Python (3.12 by default) with torch, Lightning and
most of the scientific stack preinstalled (`benchmarks/gpu_image_packages.txt` lists them) and
reaches no package index. This script, on a machine that does:

1. downloads the project's dependencies (from `pyproject.toml`) and everything they need, as
   wheels for that Python on manylinux x86-64 (`pip download --only-binary=:all:`);
2. drops the distributions the image already has (the project then runs on the image's torch)
   and those the check never imports (below);
3. rewrites each kept wheel with LZMA compression (pip reads any compression `zipfile` reads)
   and leaves out files the check never loads (below), so that the bundle fits the 64 MiB a
   device call carries (Ray's wheel alone is 79 MB);
4. prints the bundle's size and refuses one over `--max-mib`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PACKAGES = ROOT / "benchmarks" / "gpu_image_packages.txt"
# The check's sweeps run an embedded Ray without its dashboard and keep their Optuna study in
# SQLite: Ray's `default` extra (the dashboard, `ray start`, `ray job submit`), PostgreSQL's
# driver and optuna-dashboard are never imported there.
REQUIREMENT_FOR_THE_CHECK = {"ray": "ray[tune]"}
NOT_USED_BY_THE_CHECK = {"psycopg", "optuna-dashboard"}
# Files left out of a wheel: Ray's Java worker (32 MB; Python trials never load it) and its
# dashboard's web client (served only by the dashboard, which the check does not start).
LEFT_OUT = {"ray": ("ray/jars/", "ray/dashboard/client/")}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def canonical(name: str) -> str:
    """PEP 503 name: `Py_YAML` and `py-yaml` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(skip: set[str]) -> list[str]:
    """`pyproject.toml`'s dependencies that the check imports and the image does not hold."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = []
    for dep in deps:
        name = canonical(re.split(r"[\[<>=!~; ]", dep, maxsplit=1)[0])
        if name in skip or name in NOT_USED_BY_THE_CHECK:
            continue
        if name in REQUIREMENT_FOR_THE_CHECK:  # the same version range, other extras
            dep = REQUIREMENT_FOR_THE_CHECK[name] + re.sub(r"^[\w.-]+(\[[^]]*\])?", "", dep)
        wanted.append(dep)
    return wanted


def image_packages(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {canonical(line) for line in lines if line}


def wheel_name(path: Path) -> str:
    return canonical(path.name.split("-", 1)[0])


def repack(source: Path, target: Path, left_out: tuple[str, ...]) -> None:
    """Copies a wheel with LZMA compression, without the files under `left_out` (and their
    RECORD lines); file modes (the executables Ray and wandb start) are kept."""
    with zipfile.ZipFile(source) as src, \
            zipfile.ZipFile(target, "w", compression=zipfile.ZIP_LZMA) as dst:
        for info in src.infolist():
            if info.filename.startswith(left_out):
                continue
            data = src.read(info)
            if left_out and info.filename.endswith(".dist-info/RECORD"):
                kept = [line for line in data.decode().splitlines(keepends=True)
                        if not line.startswith(left_out)]
                data = "".join(kept).encode()
            info.compress_type = zipfile.ZIP_LZMA
            dst.writestr(info, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu" / "wheels",
                        help="the bundle folder (emptied first; default .gpu/wheels)")
    parser.add_argument("--python-version", default="3.12",
                        help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--image-packages", type=Path, default=IMAGE_PACKAGES,
                        help="distributions the GPU image already has, one per line")
    parser.add_argument("--max-mib", type=float, default=60.0,
                        help="refuse a bundle larger than this (default 60)")
    args = parser.parse_args(argv)
    skip = image_packages(args.image_packages)
    requirements = project_requirements(skip)
    with tempfile.TemporaryDirectory(prefix="kp-gpu-wheels-") as tmp:
        download = Path(tmp)
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                   "--python-version", args.python_version, "--implementation", "cp",
                   *platforms, "--dest", str(download), *requirements]
        print("downloading:", " ".join(requirements), flush=True)
        subprocess.run(command, check=True)
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        kept, dropped = [], []
        for wheel in sorted(download.glob("*.whl")):
            name = wheel_name(wheel)
            if name in skip:
                dropped.append(name)
                continue
            repack(wheel, args.out / wheel.name, LEFT_OUT.get(name, ()))
            kept.append(wheel.name)
    size = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 2**20
    print(f"left out {len(dropped)} distributions the image has: {', '.join(dropped)}")
    print(f"wrote {len(kept)} wheels, {size:.1f} MiB, to {args.out}")
    if size > args.max_mib:
        print(f"error: {args.out}: the bundle is {size:.1f} MiB, over --max-mib "
              f"{args.max_mib:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
