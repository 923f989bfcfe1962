"""Input pipeline throughput at 224 px: raw record bytes, decode + normalise, + augment.

Builds a phantom SIIM-ACR record set in a temporary folder, then measures each stage in its
steady state: the dataset repeats forever, a few batches warm it up (graph tracing, tf.data
autotuning), and the next ``--batches`` batches are timed. Two measures per stage:

- images per second (wall clock);
- CPU time per image (user + system time of the whole process): what the stage costs the
  machine, unaffected by how tf.data happened to schedule threads in that run.

The stages alternate ``--rounds`` times and each keeps its median (a 2-core machine's speed
drifts between runs). The target is augmentation costing at most 2x the decode-only time per
image; the script prints the ratio by both measures. It never times the end of a finite
dataset: with autotuning on, tf.data may hold the end-of-sequence up to about a second while its
autotuner thread wakes, which once made whole runs look half as fast.

It also times the in-model alternative (:func:`cxrkit.data.augmentation_layers` applied to
decoded batches), which on a GPU machine runs on the accelerator instead of the input pipeline.

    python benchmarks/bench_pipeline.py [--images 64] [--batches 80] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from cxrkit.data import augmentation_layers, load, read_manifest  # noqa: E402
from data_prep.phantom.siim_acr import generate_siim_acr  # noqa: E402
from data_prep.siim_acr.convert import convert_siim_acr  # noqa: E402

WARMUP_BATCHES = 8


def measure(dataset: tf.data.Dataset, batches: int, batch: int, step=None) -> tuple[float, float]:
    """(images per second, CPU seconds per image) over ``batches`` steady-state batches."""
    iterator = iter(dataset)
    for element in itertools.islice(iterator, WARMUP_BATCHES):
        if step is not None:
            step(element["image"])
    wall, cpu = time.perf_counter(), time.process_time()
    for element in itertools.islice(iterator, batches):
        if step is not None:
            step(element["image"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return batches * batch / wall, cpu / (batches * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batches", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        raw, records = os.path.join(folder, "raw"), os.path.join(folder, "records")
        generate_siim_acr(raw, n=args.images, size=256, seed=0)
        convert_siim_acr(raw, os.path.join(raw, "train-rle.csv"), records, size=224,
                         subset=None, split="1,0,0")
        files = [os.path.join(records, n) for n in read_manifest(records)["shards"]["train"]]
        layers = augmentation_layers(seed=0)
        in_model = tf.function(lambda images: layers(images, training=True))
        decoded = "decode + z-score"
        stages = {
            "raw record bytes": lambda: tf.data.TFRecordDataset(files).repeat()
            .batch(args.batch).map(lambda b: {"image": b}),
            decoded: lambda: load(records, "train", batch_size=args.batch, repeat=True),
            "decode + z-score + augment": lambda: load(
                records, "train", batch_size=args.batch, augment=True, seed=0, repeat=True),
        }
        in_model_name = "decode + in-model augment (CPU)"
        samples = {name: [] for name in [*stages, in_model_name]}
        for _ in range(args.rounds):
            for name, make in stages.items():
                samples[name].append(measure(make(), args.batches, args.batch))
            samples[in_model_name].append(
                measure(stages[decoded](), args.batches, args.batch, step=in_model))
    rates = {name: statistics.median(r for r, _ in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in samples.items()}
    print(f"{'stage':32s} {'images/s':>10s} {'CPU us/image':>13s}   runs (images/s)")
    for name in samples:
        print(f"{name:32s} {rates[name]:10.0f} {cpu[name] * 1e6:13.0f}   "
              f"{', '.join(f'{r:.0f}' for r, _ in samples[name])}")
    augmented = "decode + z-score + augment"
    print(f"augmentation cost: {rates[decoded] / rates[augmented]:.2f}x the decode-only time "
          f"per image (wall), {cpu[augmented] / cpu[decoded]:.2f}x (CPU); target <= 2x")
    print(f"in-model augmentation on this CPU: "
          f"{rates[decoded] / rates[in_model_name]:.2f}x the decode-only time (wall)")
    print(f"raw bytes / decode: {rates['raw record bytes'] / rates[decoded]:.1f}x")


if __name__ == "__main__":
    main()
