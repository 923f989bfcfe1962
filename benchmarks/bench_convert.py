"""Conversion throughput at the real sizes: local runner and Apache Beam, projected to full sets.

Inputs (made once, reused from ``--cache``): EGD-CXR-like phantoms at their native size (16-bit
DICOMs of about 3,000 x 2,500, a gaze table topped up to ``--gaze-rows`` rows an image by
jittered copies of each image's own samples) and SIIM-ACR-like phantoms (1024 x 1024 8-bit
DICOMs, most JPEG Baseline). Each conversion runs in its own process (``--one``), so its peak
memory — the process and, for Beam, its worker processes — is measured alone. Prints a
Markdown table: images per second, peak memory, and the time a full conversion would take
on N workers at the measured per-worker rate (linear scaling: an upper bound on speed-up,
since reading the tables and writing shards do not parallelise).

    python benchmarks/bench_convert.py [--egd 100] [--siim 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = {"EGD-CXR": 1083, "SIIM-ACR": 12047, "MIMIC-CXR": 377_110}  # images
PROJECT_WORKERS = (1, 2, 8, 32, 128)


def _inputs(cache: Path, egd: int, siim: int, gaze_rows: int) -> dict[str, Path]:
    from data_prep.phantom.egd_cxr import generate_egd_cxr
    from data_prep.phantom.siim_acr import generate_siim_acr

    egd_dir, siim_dir = cache / f"egd-{egd}-{gaze_rows}", cache / f"siim-{siim}"
    if not (egd_dir / "done").is_file():
        shutil.rmtree(egd_dir, ignore_errors=True)
        print(f"writing {egd} EGD-CXR-like phantoms at native size to {egd_dir} ...")
        generate_egd_cxr(egd_dir, n=egd, seed=11, show_progress=True)
        _top_up_gaze(egd_dir / "eye_gaze.csv", gaze_rows)
        (egd_dir / "done").write_text("")
    if not (siim_dir / "done").is_file():
        shutil.rmtree(siim_dir, ignore_errors=True)
        print(f"writing {siim} SIIM-ACR-like phantoms (1024 px) to {siim_dir} ...")
        generate_siim_acr(siim_dir, n=siim, size=1024, seed=11, show_progress=True)
        (siim_dir / "done").write_text("")
    return {"egd": egd_dir, "siim": siim_dir}


def _top_up_gaze(path: Path, per_image: int) -> None:
    """Adds jittered copies of each image's own rows until it has ``per_image`` rows (the
    real eye_gaze.csv: about 1.5 million rows for 1,083 images)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    dicom, x, y = (header.index(c) for c in ("DICOM_ID", "X_ORIGINAL", "Y_ORIGINAL"))
    by_image: dict[str, list] = {}
    for row in body:
        by_image.setdefault(row[dicom], []).append(row)
    rng = np.random.default_rng(0)
    out = []
    for image_rows in by_image.values():
        out += image_rows
        for _ in range(max(0, per_image - len(image_rows))):
            row = list(image_rows[rng.integers(len(image_rows))])
            row[x] = f"{float(row[x]) + rng.normal(0, 5):.1f}"
            row[y] = f"{float(row[y]) + rng.normal(0, 5):.1f}"
            out.append(row)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *out])


def one(dataset: str, source: Path, runner: str, workers: int) -> dict:
    """Runs one conversion in this process; returns its measurements."""
    from data_prep.egd_cxr.convert import convert_egd_cxr
    from data_prep.siim_acr.convert import convert_siim_acr

    out = Path(tempfile.mkdtemp(prefix="cxrkit-bench-convert-"))
    started = time.perf_counter()
    try:
        if dataset == "egd":
            manifest = convert_egd_cxr(source / "master_sheet.csv", source / "eye_gaze.csv",
                                       source, out / "records", test=10, val=10,
                                       workers=workers, runner=runner)
        else:
            manifest = convert_siim_acr(source, source / "train-rle.csv", out / "records",
                                        subset=None, split="0.8,0.1,0.1", workers=workers,
                                        runner=runner)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    images = sum(c["total"] for c in manifest["counts"].values())
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "images": images, "peak_mib": own,
            "peak_worker_mib": children}


def _measure(dataset: str, source: Path, runner: str, workers: int) -> dict:
    command = [sys.executable, __file__, "--one", dataset, str(source), runner, str(workers)]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise SystemExit(f"{dataset} {runner} {workers}: failed\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--egd", type=int, default=100, help="EGD-CXR-like images")
    parser.add_argument("--siim", type=int, default=100, help="SIIM-ACR-like images")
    parser.add_argument("--gaze-rows", type=int, default=1400, help="gaze rows an image")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "cxrkit-bench-convert")
    parser.add_argument("--one", nargs=4, metavar=("DATASET", "SOURCE", "RUNNER", "WORKERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        dataset, source, runner, workers = args.one
        print(json.dumps(one(dataset, Path(source), runner, int(workers))))
        return
    inputs = _inputs(args.cache, args.egd, args.siim, args.gaze_rows)
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores; outputs at the study "
          "sizes (EGD-CXR 640 x 512, SIIM-ACR 224)\n")
    runs = [("local", 1), ("local", args.workers), ("beam", args.workers)]
    columns = ["data", "runner", "workers", "images", "s", "images/s", "per worker",
               "peak MiB main / workers", "full set, 1 worker", "full set, 8 workers",
               *(f"MIMIC-CXR, {n} workers" for n in PROJECT_WORKERS[2:])]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for dataset, name in (("egd", "EGD-CXR"), ("siim", "SIIM-ACR")):
        for runner, workers in runs:
            m = _measure(dataset, inputs[dataset], runner, workers)
            rate = m["images"] / m["seconds"]
            per_worker = rate / workers
            full = [_hours(FULL[name] / (per_worker * n)) for n in (1, 8)]
            # MIMIC-CXR's DICOMs are EGD-CXR's (same archive, same sizes)
            mimic = [_hours(FULL["MIMIC-CXR"] / (per_worker * n)) if dataset == "egd"
                     else "-" for n in PROJECT_WORKERS[2:]]
            cells = [f"{name} ({FULL[name]:,})", runner, workers, m["images"],
                     f"{m['seconds']:.1f}", f"{rate:.2f}", f"{per_worker:.2f}",
                     f"{m['peak_mib']:.0f} / {m['peak_worker_mib']:.0f}", *full, *mimic]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print("\nProjections: the full set at the row's per-worker rate on N workers, assuming "
          "linear scaling. 'workers' peak: the largest worker process (Beam's workers, or the "
          "local runner's decoding processes).")


if __name__ == "__main__":
    main()
