"""Input pipeline throughput at 224 px: raw record bytes, decode + normalise, + augment.

Builds a phantom SIIM-ACR record set in a temporary folder, then prints images per second for
each stage and the ratios (target: augmentation costs at most 2x the decode-only time).

    python benchmarks/bench_pipeline.py [--images 64] [--passes 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from cxrkit.data import load, read_manifest  # noqa: E402
from data_prep.phantom.siim_acr import generate_siim_acr  # noqa: E402
from data_prep.siim_acr.convert import convert_siim_acr  # noqa: E402


def rate(dataset: tf.data.Dataset, images: int) -> float:
    for _ in dataset.take(1):  # warm-up: graph tracing, file cache
        pass
    start = time.perf_counter()
    for _ in dataset:
        pass
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        raw, records = os.path.join(folder, "raw"), os.path.join(folder, "records")
        generate_siim_acr(raw, n=args.images, size=256, seed=0)
        convert_siim_acr(raw, os.path.join(raw, "train-rle.csv"), records, size=224,
                         subset=None, split="1,0,0")
        total = args.images * args.passes
        files = [os.path.join(records, n) for n in read_manifest(records)["shards"]["train"]]
        raw_bytes = tf.data.TFRecordDataset(files).repeat(args.passes).batch(args.batch)

        rates = {
            "raw record bytes": rate(raw_bytes, total),
            "decode + z-score": rate(
                load(records, "train", batch_size=args.batch).repeat(args.passes), total),
            "decode + z-score + augment": rate(
                load(records, "train", batch_size=args.batch, augment=True, seed=0)
                .repeat(args.passes), total),
        }
    for name, value in rates.items():
        print(f"{name:30s} {value:10.0f} images/s")
    decode = rates["decode + z-score"]
    print(f"augmentation cost: {decode / rates['decode + z-score + augment']:.2f}x the "
          "decode-only time (target <= 2x)")
    print(f"raw bytes / decode: {rates['raw record bytes'] / decode:.1f}x")


if __name__ == "__main__":
    main()
