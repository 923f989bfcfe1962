"""The backbone registry: the nine MLMI 2023 backbones plus DenseNet201 and Inception-ResNet-v2.

Each entry holds the architecture of the original paper (as a keras-hub config, or a
``keras.applications`` builder where keras-hub has no such model), the keras-hub ImageNet preset
when one exists, and the Grad-CAM target layer of the 2023 study (docs/study.md, 2023 §3.3.2):

- VGG: the last convolution (``block5_conv3``, ReLU included);
- ResNet: the output of the last residual block (after the add and its ReLU);
- DenseNet: the last dense block after its final BN-ReLU (``relu``), never the 32-channel
  ``conv5_block32_2_conv`` that "the last Conv2D" would pick;
- ViT: the input LayerNorm (``ln_1``) of the final encoder block, tapped by
  :mod:`cxrkit.models.vit_tap` because keras-hub nests the blocks in one layer;
- Inception-ResNet-v2: the final ``conv_7b_ac`` activation.

Weights (``build_backbone(..., weights=...)``): ``None`` is an explicit random initialisation;
``"imagenet"`` loads the keras-hub preset (or the ``keras.applications`` file), which needs the
internet; a path loads a local keras-hub preset directory or a ``.weights.h5`` / ``.h5`` file
offline. Without network access ``"imagenet"`` fails with a message that says how to pass a
local file instead — it never falls back to random weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import keras_hub

from cxrkit.errors import CxrkitError, InputError


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows of one backbone.

    Attributes:
        name: registry name, e.g. ``"resnet50"``.
        family: ``vgg``, ``resnet``, ``vit``, ``densenet`` or ``inception_resnet``.
        config: constructor arguments of the keras-hub backbone (without ``image_shape``).
        preset: the keras-hub ImageNet preset, or None when keras-hub has none.
        target_layer: the Grad-CAM target layer inside the backbone.
        reference: the paper whose architecture this is.
        min_size: the smallest input side the architecture accepts.
    """

    name: str
    family: str
    config: dict
    preset: str | None
    target_layer: str
    reference: str
    min_size: int = 32


def _resnet(blocks, block_type):
    return {"input_conv_filters": [64], "input_conv_kernel_sizes": [7],
            "stackwise_num_filters": [64, 128, 256, 512], "stackwise_num_blocks": blocks,
            "stackwise_num_strides": [1, 2, 2, 2], "block_type": block_type}


def _vit(layers, heads, width, mlp):
    return {"patch_size": 16, "num_layers": layers, "num_heads": heads, "hidden_dim": width,
            "mlp_dim": mlp}


_VGG = "Simonyan & Zisserman 2015"
_RESNET = "He et al. 2016"
_VIT = "Dosovitskiy et al. 2021"
SPECS: dict[str, BackboneSpec] = {s.name: s for s in [
    BackboneSpec("vgg16", "vgg", {"stackwise_num_repeats": [2, 2, 3, 3, 3],
                                  "stackwise_num_filters": [64, 128, 256, 512, 512]},
                 "vgg_16_imagenet", "block5_conv3", _VGG),
    BackboneSpec("vgg19", "vgg", {"stackwise_num_repeats": [2, 2, 4, 4, 4],
                                  "stackwise_num_filters": [64, 128, 256, 512, 512]},
                 "vgg_19_imagenet", "block5_conv4", _VGG),
    BackboneSpec("resnet18", "resnet", _resnet([2, 2, 2, 2], "basic_block"),
                 "resnet_18_imagenet", "stack3_block1_out", _RESNET),
    BackboneSpec("resnet34", "resnet", _resnet([3, 4, 6, 3], "basic_block"),
                 None, "stack3_block2_out", _RESNET),
    BackboneSpec("resnet50", "resnet", _resnet([3, 4, 6, 3], "bottleneck_block"),
                 "resnet_50_imagenet", "stack3_block2_out", _RESNET),
    BackboneSpec("resnet101", "resnet", _resnet([3, 4, 23, 3], "bottleneck_block"),
                 "resnet_101_imagenet", "stack3_block2_out", _RESNET),
    BackboneSpec("vit_small", "vit", _vit(12, 6, 384, 1536), None, "ln_1", _VIT, 16),
    BackboneSpec("vit_base", "vit", _vit(12, 12, 768, 3072),
                 "vit_base_patch16_224_imagenet", "ln_1", _VIT, 16),
    BackboneSpec("vit_large", "vit", _vit(24, 16, 1024, 4096),
                 "vit_large_patch16_224_imagenet", "ln_1", _VIT, 16),
    BackboneSpec("densenet201", "densenet", {"stackwise_num_repeats": [6, 12, 48, 32]},
                 "densenet_201_imagenet", "relu", "Huang et al. 2017"),
    BackboneSpec("inception_resnet_v2", "inception_resnet", {}, None, "conv_7b_ac",
                 "Szegedy et al. 2017", 75),
]}

_KERAS_HUB = {"vgg": keras_hub.models.VGGBackbone, "resnet": keras_hub.models.ResNetBackbone,
              "vit": keras_hub.models.ViTBackbone, "densenet": keras_hub.models.DenseNetBackbone}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``; a clear error listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise CxrkitError(f"unknown model {name!r}; known: {', '.join(SPECS)}") from None


def _random(spec: BackboneSpec, image_shape) -> keras.Model:
    if spec.family == "inception_resnet":
        return keras.applications.InceptionResNetV2(include_top=False, weights=None,
                                                    input_shape=image_shape)
    return _KERAS_HUB[spec.family](**spec.config, image_shape=image_shape,
                                   name=f"{spec.name}_backbone")


def _offline_advice(spec: BackboneSpec) -> str:
    return (f"pass weights=PATH with a local keras-hub preset directory (for example one made "
            f"by `backbone.save_to_preset(DIR)` on a machine with internet, or downloaded from "
            f"Kaggle {spec.preset or 'Models'}) or a .weights.h5 file of the {spec.name} "
            f"backbone; or weights=None for an explicit random initialisation")


def _imagenet(spec: BackboneSpec, image_shape) -> keras.Model:
    if spec.family == "inception_resnet":
        try:
            return keras.applications.InceptionResNetV2(include_top=False, weights="imagenet",
                                                        input_shape=image_shape)
        except Exception as err:  # keras.applications raises a bare Exception offline
            raise CxrkitError(f"could not download the ImageNet weights of {spec.name} "
                              f"(no network?): {err}. {_offline_advice(spec)}") from None
    if spec.preset is None:
        raise CxrkitError(f"keras-hub has no ImageNet preset for {spec.name}; "
                          f"{_offline_advice(spec)}")
    try:
        return keras_hub.models.Backbone.from_preset(spec.preset, image_shape=image_shape)
    except OSError as err:  # requests' ConnectionError is an OSError
        raise CxrkitError(f"could not download the keras-hub preset {spec.preset!r} "
                          f"(no network?): {err.__class__.__name__}. "
                          f"{_offline_advice(spec)}") from None


def _local(spec: BackboneSpec, path: Path, image_shape) -> keras.Model:
    if not path.exists():
        raise InputError(path, "weights not found (expected a keras-hub preset directory or a "
                               ".weights.h5 file)")
    if path.is_dir():
        if spec.family == "inception_resnet":
            raise InputError(path, f"{spec.name} is a keras.applications model; pass its "
                                   ".h5 or .weights.h5 file, not a directory")
        try:
            return keras_hub.models.Backbone.from_preset(str(path), image_shape=image_shape)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(path, f"not a usable keras-hub preset: {err}") from None
    if not path.name.endswith(".h5"):
        raise InputError(path, "unknown weights format; expected a .weights.h5 or .h5 file or "
                               "a keras-hub preset directory")
    backbone = _random(spec, image_shape)
    try:
        backbone.load_weights(path)
    except (OSError, ValueError) as err:
        raise InputError(path, f"weights do not fit the {spec.name} backbone: {err}") from None
    return backbone


def build_backbone(name: str, *, image_size: int | tuple[int, int] = 224,
                   weights: str | Path | None = None) -> keras.Model:
    """Builds the feature extractor ``name`` for RGB images of ``image_size`` (rows, cols).

    Args:
        name: a registry name (see :data:`SPECS`).
        image_size: an int for square inputs or (rows, cols).
        weights: ``None`` (random), ``"imagenet"`` or a local path (see the module docstring).
    """
    spec = get_spec(name)
    rows, cols = (image_size, image_size) if isinstance(image_size, int) else image_size
    if min(rows, cols) < spec.min_size or (spec.family == "vit" and (rows % 16 or cols % 16)):
        raise CxrkitError(f"{name} cannot take {rows}x{cols} inputs (minimum side "
                          f"{spec.min_size}{', multiple of 16' if spec.family == 'vit' else ''})")
    image_shape = (rows, cols, 3)
    if weights is None:
        return _random(spec, image_shape)
    if weights == "imagenet":
        return _imagenet(spec, image_shape)
    return _local(spec, Path(weights), image_shape)
