"""What ``cxrkit models list`` and ``describe`` report: one row per model, as plain data.

The registry backbones are described by building their feature extractor (random weights: no
download) and the 2023 study's classifier; the MLMI 2024 networks by building their parts.
"""

from __future__ import annotations

from cxrkit.errors import CxrkitError
from cxrkit.models.backbones import SPECS, build_backbone
from cxrkit.models.classifier import build_classifier

NETWORKS = {
    "mlmi2024": "the three-stage network: DenseNet201 + dual-encoder Res-SE-UNet + fusion head",
    "res_se_unet": "Res-SE-UNet alone (ablation of Table 4.2)",
    "unet": "standard UNet ('UNet S', Table 4.2)",
    "mt_unet": "MT-UNet (Zhu et al. 2022): UNet + a classifier on the pooled bottleneck and "
               "decoder, uncertainty-weighted",
    "gazegnn": "GazeGNN (Wang et al. 2023): Pyramid Vision GNN (tiny) with the radiologist's "
               "gaze as a second input (Table 4.1 baseline)",
}


def catalog() -> list[dict]:
    """One short row per model: name, kind, description."""
    rows = [{"name": s.name, "kind": "backbone", "family": s.family,
             "description": f"{s.reference}; Grad-CAM target {s.target_layer}",
             "imagenet_preset": s.preset} for s in SPECS.values()]
    rows += [{"name": n, "kind": "network", "family": "mlmi2024", "description": d,
              "imagenet_preset": None} for n, d in NETWORKS.items()]
    return rows


def _count(model) -> dict:
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return {"parameters": int(model.count_params()), "trainable": trainable}


def describe(name: str, input_size: int | tuple[int, int] = 224, num_classes: int = 2) -> dict:
    """Parameter counts, input shape, Grad-CAM target and weight options of one model."""
    rows, cols = (input_size, input_size) if isinstance(input_size, int) else input_size
    if name in SPECS:
        spec = SPECS[name]
        backbone = build_backbone(name, image_size=(rows, cols))
        classifier = build_classifier(name, num_classes=num_classes,
                                      input_shape=(rows, cols, 1))
        return {"name": name, "input_shape": [rows, cols, 1], "family": spec.family,
                "reference": spec.reference,
                "feature_extractor": _count(backbone),
                f"classifier_{num_classes}_classes": _count(classifier),
                "grad_cam_target": spec.target_layer,
                "weights": {"imagenet": spec.preset or "no keras-hub preset: pass a local file",
                            "local": "keras-hub preset directory or .weights.h5 file",
                            "none": "random initialisation"}}
    if name in NETWORKS:
        from cxrkit.models.mlmi2024 import build_parts
        from cxrkit.models.unet import MultiTaskUNet, build_unet

        if name == "gazegnn":
            from cxrkit.models.gazegnn import build_gazegnn, cam_layer, pytorch_counts

            model = build_gazegnn((rows, cols, 1), 3)
            return {"name": name, "input_shape": {"image": [rows, cols, 1],
                                                  "gaze": [rows, cols, 1]},
                    "description": NETWORKS[name], "parameters": pytorch_counts(model),
                    "grad_cam_target": cam_layer(model)}
        if name == "mlmi2024":
            parts = build_parts((rows, cols, 1), num_classes=3)
            counts = {k: _count(v) for k, v in parts.items()}
        else:
            block = "res_se" if name == "res_se_unet" else "double_conv"
            classes = 3 if name == "mt_unet" else None
            unet = build_unet((rows, cols, 1), block=block, num_classes=classes)
            counts = {"unet": _count(MultiTaskUNet(unet) if classes else unet)}
        return {"name": name, "input_shape": [rows, cols, 1], "description": NETWORKS[name],
                "parts": counts, "grad_cam_target": "densenet relu (final DenseNet201 "
                "features)" if name == "mlmi2024" else None}
    known = ", ".join([*SPECS, *NETWORKS])
    raise CxrkitError(f"unknown model {name!r}; known: {known}")
