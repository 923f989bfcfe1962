"""Input pipeline throughput at 224 px: raw record bytes, decode + normalise, + augment.

Builds a phantom SIIM-ACR record set in a temporary folder, then measures images per second
for each stage, alternating the stages ``--rounds`` times and keeping each one's median (a
2-core machine's speed drifts between runs). Prints the rates and the ratios; the target is
augmentation costing at most 2x the decode-only time. Also times the in-model alternative
(:func:`cxrkit.data.augmentation_layers` applied to decoded batches), which on a GPU machine
runs on the accelerator instead of the input pipeline.

    python benchmarks/bench_pipeline.py [--images 64] [--passes 40] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from cxrkit.data import augmentation_layers, load, read_manifest  # noqa: E402
from data_prep.phantom.siim_acr import generate_siim_acr  # noqa: E402
from data_prep.siim_acr.convert import convert_siim_acr  # noqa: E402


def rate(make_dataset, images: int, step=None) -> float:
    dataset = make_dataset()
    for batch in dataset.take(1):  # warm-up: graph tracing, file cache
        if step is not None:
            step(batch["image"])
    start = time.perf_counter()
    for batch in dataset:
        if step is not None:
            step(batch["image"])
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total = args.images * args.passes
    with tempfile.TemporaryDirectory() as folder:
        raw, records = os.path.join(folder, "raw"), os.path.join(folder, "records")
        generate_siim_acr(raw, n=args.images, size=256, seed=0)
        convert_siim_acr(raw, os.path.join(raw, "train-rle.csv"), records, size=224,
                         subset=None, split="1,0,0")
        files = [os.path.join(records, n) for n in read_manifest(records)["shards"]["train"]]
        layers = augmentation_layers(seed=0)
        in_model = tf.function(lambda images: layers(images, training=True))
        stages = {
            "raw record bytes": lambda: tf.data.TFRecordDataset(files).repeat(args.passes)
            .batch(args.batch).map(lambda b: {"image": b}),
            "decode + z-score": lambda: load(records, "train", batch_size=args.batch)
            .repeat(args.passes),
            "decode + z-score + augment": lambda: load(
                records, "train", batch_size=args.batch, augment=True, seed=0)
            .repeat(args.passes),
        }
        samples = {name: [] for name in [*stages, "decode + in-model augment (CPU)"]}
        for _ in range(args.rounds):
            for name, make in stages.items():
                samples[name].append(rate(make, total))
            samples["decode + in-model augment (CPU)"].append(
                rate(stages["decode + z-score"], total, step=in_model))
    rates = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in rates.items():
        print(f"{name:32s} {value:10.0f} images/s   (runs: "
              f"{', '.join(f'{v:.0f}' for v in samples[name])})")
    decode = rates["decode + z-score"]
    print(f"augmentation cost: {decode / rates['decode + z-score + augment']:.2f}x the "
          "decode-only time (target <= 2x)")
    print(f"in-model augmentation on this CPU: "
          f"{decode / rates['decode + in-model augment (CPU)']:.2f}x the decode-only time")
    print(f"raw bytes / decode: {rates['raw record bytes'] / decode:.1f}x")


if __name__ == "__main__":
    main()
