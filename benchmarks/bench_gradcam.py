"""Batched compiled Grad-CAM vs one compiled forward pass (the floor), for every backbone.

Rows: the nine MLMI 2023 backbones (VGG16/19, ResNet18/34/50/101, ViT-S/B/L), the MLMI 2024
models that get a Grad-CAM (DenseNet201, Inception-ResNet-v2, GazeGNN and the three-stage
network, on their declared targets), each at 224 x 224 and at 640 x 512 (random weights: speed
does not depend on them). Each model runs in its own process (``--one``), so one model's
memory does not weigh on the next. Prints seconds per batch and the ratio of
``cxrkit.explain.grad_cam`` to one ``tf.function`` forward pass of the same batch (target:
<= 1.2), then with ``--compare`` also a one-image-at-a-time loop and the eager per-image recipe.

    python benchmarks/bench_gradcam.py [--sizes 224x224,640x512] [--models vgg16,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

MODELS = ("vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "vit_small",
          "vit_base", "vit_large", "densenet201", "inception_resnet_v2", "gazegnn", "mlmi2024")
BATCH = {"224x224": 8, "640x512": 2}  # the largest ViT-L batches a 2-core CPU measures in ~1 min


def _model(name: str, rows: int, cols: int):
    """The model and a batch builder for ``name`` at (rows, cols)."""
    shape = (rows, cols, 1)
    if name == "gazegnn":
        from cxrkit.models import build_gazegnn

        return build_gazegnn(shape, 3), True
    if name == "mlmi2024":
        from cxrkit.models import GazeDiagnosisNet, build_parts

        parts = build_parts(shape)
        return GazeDiagnosisNet(parts["densenet"], parts["unet"], parts["fusion"]), False
    from cxrkit.models import build_classifier

    return build_classifier(name, num_classes=2, input_shape=shape), False


def eager_one_image(model, images):
    """The slow recipe: one image at a time, eager, no tf.function."""
    import tensorflow as tf

    cam_model = model.cam_model()
    for i in range(len(images)):
        with tf.GradientTape() as tape:
            acts, logits, *_ = cam_model(images[i:i + 1], training=False)
            score = tf.reduce_max(logits[0])
        grads = tape.gradient(score, acts)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))
        cam = cam / (tf.reduce_max(cam) + 1e-7)
        tf.image.resize(cam[..., None], images.shape[1:3]).numpy()


def one(name: str, size: str, batch: int, repeats: int, compare: bool) -> dict:
    import tensorflow as tf
    from timing import best_time

    from cxrkit.explain import grad_cam

    rows, cols = (int(v) for v in size.split("x"))
    model, gaze = _model(name, rows, cols)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((batch, rows, cols, 1), dtype="float32"))
    inputs = {"image": images, "gaze": tf.constant(rng.random((batch, rows, cols, 1),
                                                              dtype="float32"))} \
        if gaze else images
    forward = tf.function(lambda x: model(x, training=False))
    started = time.perf_counter()
    floor = best_time(lambda: tf.nest.map_structure(lambda t: t.numpy(), forward(inputs)),
                      repeats, warmup=True)
    batched = best_time(lambda: grad_cam(model, inputs), repeats, warmup=True)
    result = {"forward": floor, "grad_cam": batched, "params": int(model.count_params()),
              "seconds": time.perf_counter() - started}
    if compare and not gaze:
        result["loop"] = best_time(lambda: [grad_cam(model, images[i:i + 1])
                                            for i in range(batch)], 1, warmup=True)
        result["eager"] = best_time(lambda: eager_one_image(model, images), 1, warmup=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default="224x224,640x512")
    parser.add_argument("--batch", type=int, default=None,
                        help="images a batch [default: 8 at 224 x 224, 2 at 640 x 512]")
    parser.add_argument("--compare", action="store_true",
                        help="also time a one-image loop and the eager per-image recipe")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "SIZE", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, size, batch = args.one
        print(json.dumps(one(name, size, int(batch), args.repeats, args.compare)))
        return
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, best of {args.repeats} "
          "after a warm-up; random weights")
    extra = " | one-image loop | eager per-image" if args.compare else ""
    print(f"| model | input | batch | parameters | forward (s) | grad_cam (s) | ratio{extra} |")
    print("|---|---|---|---|---|---|---|" + ("---|---|" if args.compare else ""))
    worst = 0.0
    for size in args.sizes.split(","):
        for name in args.models.split(","):
            batch = args.batch or BATCH.get(size, 4)
            command = [sys.executable, __file__, "--one", name, size, str(batch),
                       "--repeats", str(args.repeats), *(["--compare"] if args.compare else [])]
            result = subprocess.run(command, capture_output=True, text=True,
                                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
            if result.returncode or not lines:
                print(f"| {name} | {size} | {batch} | failed: "
                      f"{result.stderr.strip().splitlines()[-1][:150]} |||||", flush=True)
                continue
            m = json.loads(lines[-1])
            ratio = m["grad_cam"] / m["forward"]
            worst = max(worst, ratio)
            cells = [name, size.replace("x", " x "), batch, f"{m['params']:,}",
                     f"{m['forward']:.3f}", f"{m['grad_cam']:.3f}", f"{ratio:.2f}x"]
            if "loop" in m:
                cells += [f"{m['loop'] / m['forward']:.2f}x", f"{m['eager'] / m['forward']:.2f}x"]
            elif args.compare:
                cells += ["-", "-"]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(f"\nlargest ratio: {worst:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
