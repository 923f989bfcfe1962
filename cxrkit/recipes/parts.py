"""Recipe parts: ``[parts.<name>]`` tables to Keras models, and their saved files.

Builders (``builder = ...``) and the keys each reads besides ``builder``:

- ``densenet_encoder``: ``weights`` ("none", "imagenet" or a local path);
- ``dense_head``: ``dropout``;
- ``unet``: ``block`` ("res_se" | "double_conv"), ``filters`` (five widths), ``dual_encoder``
  (bool), ``multitask`` (bool: the MT-UNet class head);
- ``fusion``: ``hidden``, ``dropout`` (the decoder width comes from the UNet part named by
  ``decoder``);
- ``classifier``: ``model`` (a registry name), ``weights``, ``dropout``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cxrkit.models import (
    MultiTaskUNet,
    build_classifier,
    build_dense_head,
    build_densenet_encoder,
    build_fusion_head,
    build_unet,
)


def _weights(value):
    return None if value in (None, "none") else value


def build_part(name: str, spec: dict, parts_spec: dict, input_shape, num_classes: int):
    """A fresh model for part ``name`` (see the module docstring)."""
    builder = spec["builder"]
    if builder == "densenet_encoder":
        return build_densenet_encoder(input_shape, weights=_weights(spec.get("weights")),
                                      name=name)
    if builder == "dense_head":
        return build_dense_head(num_classes, dropout=spec.get("dropout", 0.0), name=name)
    if builder == "unet":
        unet = build_unet(input_shape, filters=tuple(spec.get("filters", (64, 128, 256, 512,
                                                                           1024))),
                          block=spec.get("block", "res_se"),
                          dual_channels=1920 if spec.get("dual_encoder", False) else None,
                          num_classes=num_classes if spec.get("multitask", False) else None,
                          name=name)
        return MultiTaskUNet(unet, name=f"{name}_multitask") if spec.get("multitask") else unet
    if builder == "fusion":
        decoder = parts_spec[spec.get("decoder", "unet")]
        width = decoder.get("filters", (64,))[0]
        return build_fusion_head(num_classes, decoder_channels=width,
                                 hidden=spec.get("hidden", 64),
                                 dropout=spec.get("dropout", 0.25), name=name)
    return build_classifier(spec["model"], num_classes=num_classes, input_shape=input_shape,
                            weights=_weights(spec.get("weights")),
                            dropout=spec.get("dropout", 0.0))


def part_path(out: Path, name: str) -> Path:
    """Where a part is saved after the stage that trains it."""
    return out / "parts" / f"{name}.keras"


def save_part(part, path: Path) -> None:
    """Saves a part atomically (a stage counts as done only when its parts exist whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.keras")
    part.save(partial)
    partial.replace(path)


def publish(source: Path, target: Path) -> None:
    """Copies a stage's saved part to ``parts/`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
