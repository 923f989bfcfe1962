"""The model zoo (see ``docs/models.md``).

- :func:`build_classifier` — the MLMI 2023 backbones (and the DenseNet201 /
  Inception-ResNet-v2 baselines) as grayscale classifiers that name their Grad-CAM layer;
- :mod:`cxrkit.models.mlmi2024` — the three-stage network's parts and stage models;
- :func:`build_unet` — Res-SE-UNet, its dual-encoder form, UNet and MT-UNet;
- :func:`build_gazegnn` — GazeGNN, the gaze-input baseline of Table 4.1;
- :func:`freeze` / :func:`unfreeze` / :func:`set_trainable` — what the recipes toggle;
- :func:`fuse_batch_norms` — Keras' BatchNorm with its training step in one TensorFlow kernel
  (the recipes switch every part to it; importing this package registers the layer, so saved
  parts load);
- :mod:`cxrkit.models.keras_saving_cache` — the cache Keras' saving means to keep, kept
  (the recipes call it before they save or load a part: saving DenseNet201 takes ~30 % less).
"""

from cxrkit.models.backbones import SPECS, BackboneSpec, build_backbone, get_spec
from cxrkit.models.classifier import CxrClassifier, build_classifier
from cxrkit.models.densenet_encoder import build_dense_head, build_densenet_encoder
from cxrkit.models.freeze import freeze, set_trainable, unfreeze
from cxrkit.models.fused_batch_norm import fuse_batch_norms
from cxrkit.models.gazegnn import build_gazegnn
from cxrkit.models.mlmi2024 import (
    GazeDiagnosisNet,
    build_fusion_head,
    build_parts,
    encoder_model,
    saliency_model,
)
from cxrkit.models.unet import MultiTaskUNet, build_unet

__all__ = ["SPECS", "BackboneSpec", "CxrClassifier", "GazeDiagnosisNet", "MultiTaskUNet",
           "build_backbone", "build_classifier", "build_dense_head", "build_densenet_encoder",
           "build_fusion_head", "build_gazegnn", "build_parts", "build_unet", "encoder_model",
           "freeze", "fuse_batch_norms", "get_spec", "saliency_model", "set_trainable", "unfreeze"]
