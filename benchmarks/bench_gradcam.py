"""Batched compiled Grad-CAM vs one compiled forward pass (the floor), and slower recipes.

For ResNet50 and DenseNet201 at 224 px, batch 16, prints seconds per batch and the ratio to one
``tf.function`` forward pass of the same batch for: ``cxrkit.explain.grad_cam`` (target: <= 1.2),
a one-image-at-a-time loop over the same compiled function, and the eager per-image recipe.

    python benchmarks/bench_gradcam.py [--repeats 3] [--models resnet50,densenet201]
"""

from __future__ import annotations

import argparse

import numpy as np
import tensorflow as tf
from timing import best_time

from cxrkit.explain import grad_cam
from cxrkit.models import build_classifier


def eager_one_image(model, images):
    cam_model = model.cam_model()
    for i in range(len(images)):
        with tf.GradientTape() as tape:
            acts, logits = cam_model(images[i:i + 1], training=False)
            score = tf.reduce_max(logits[0])
        grads = tape.gradient(score, acts)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))
        cam = cam / (tf.reduce_max(cam) + 1e-7)
        tf.image.resize(cam[..., None], images.shape[1:3]).numpy()


def measure(name: str, images, repeats: int) -> str:
    """One table row: the times of each recipe and their ratios to the forward pass."""
    batch, size = images.shape[0], images.shape[1]
    model = build_classifier(name, num_classes=2, input_shape=(size, size, 1))
    forward = tf.function(lambda x: model(x, training=False))
    floor = best_time(lambda: forward(images).numpy(), repeats, warmup=True)
    batched = best_time(lambda: grad_cam(model, images), repeats, warmup=True)
    loop = best_time(lambda: [grad_cam(model, images[i:i + 1]) for i in range(batch)], 1,
                     warmup=True)
    eager = best_time(lambda: eager_one_image(model, images), 1, warmup=True)
    return (f"| {name} | {floor:.3f} | {batched:.3f} | {batched / floor:.2f}x | "
            f"{loop / floor:.2f}x | {eager / floor:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="resnet50,densenet201")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    images = tf.random.normal((args.batch, args.size, args.size, 1))
    print(f"batch {args.batch}, {args.size} px, best of {args.repeats}")
    print("| model | forward (s) | grad_cam (s) | ratio | per-image loop | eager per-image |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        print(measure(name, images, args.repeats))

if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
