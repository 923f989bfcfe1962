"""Image classifiers over the registry's backbones: the MLMI 2023 models and the baselines.

:class:`CxrClassifier` is a task model in the keras-hub manner: a functional model over a
backbone with the study's head — global average pooling (CNNs) or the class token (ViT), an
optional dropout and one dense layer of ``num_classes`` logits (``num_classes=1`` gives a
single-logit binary head). Its input ``image`` is grayscale (rows, cols, 1) and is repeated to
three channels inside the model. It knows its Grad-CAM target layer (docs/study.md §3.3.2) and
builds a weight-sharing functional view with both the target activations and the logits
(:meth:`CxrClassifier.cam_model`), so explanation code never guesses a layer.
"""

from __future__ import annotations

import weakref

import keras

from cxrkit.models.backbones import build_backbone, get_spec
from cxrkit.models.layers import ClassToken, GrayscaleToRGB
from cxrkit.models.vit_tap import tokens_to_grid, vit_tap

_CAM_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@keras.saving.register_keras_serializable(package="cxrkit")
class CxrClassifier(keras.Model):
    """Backbone + head for grayscale chest X-rays; outputs logits.

    Args:
        backbone: a feature extractor from :func:`cxrkit.models.build_backbone` (RGB input).
        num_classes: number of logits (1 for a single-logit binary head).
        model_name: the registry name of the backbone (fixes the Grad-CAM target layer).
        dropout: dropout rate before the dense layer.

    Examples:
        >>> model = build_classifier("resnet18", num_classes=2, input_shape=(64, 64, 1))
        >>> model(np.zeros((2, 64, 64, 1))).shape
        (2, 2)
    """

    def __init__(self, backbone: keras.Model, num_classes: int, *, model_name: str,
                 dropout: float = 0.0, **kwargs):
        spec = get_spec(model_name)
        # === Layers ===
        self.backbone = backbone
        self.to_rgb = GrayscaleToRGB(name="grayscale_to_rgb")
        # keras.applications' Inception-ResNet-v2 expects [-1, 1] (its preprocess_input); the
        # other backbones take the records' values as they are, as the studies' code feeds them
        self.input_scale = (keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")
                            if spec.family == "inception_resnet"
                            else keras.layers.Identity(name="input_scale"))
        self.pooler = (ClassToken(name="pooler") if spec.family == "vit"
                       else keras.layers.GlobalAveragePooling2D(name="pooler"))
        self.output_dropout = keras.layers.Dropout(dropout, name="output_dropout")
        self.output_dense = keras.layers.Dense(num_classes, name="logits")
        # === Functional model ===
        rows, cols = backbone.input_shape[1:3]
        image = keras.Input((rows, cols, 1), name="image")
        logits = self.head(backbone(self.input_scale(self.to_rgb(image))))
        super().__init__(inputs=image, outputs=logits, **kwargs)
        # === Config ===
        self.num_classes, self.model_name, self.dropout = num_classes, model_name, dropout

    def head(self, features):
        """The classification head on the backbone's output."""
        return self.output_dense(self.output_dropout(self.pooler(features)))

    @property
    def target_layer(self) -> str:
        """The Grad-CAM target layer's name inside the backbone (docs/study.md, §3.3.2)."""
        return get_spec(self.model_name).target_layer

    def cam_model(self) -> keras.Model:
        """A weight-sharing functional model ``image -> (target activations, logits)``.

        For the ViTs the target is the token sequence; :meth:`cam_reshape` lays it on the
        patch grid (applied to activations and gradients alike, as pytorch-grad-cam does).
        """
        if self not in _CAM_MODELS:
            image = keras.Input(self.input_shape[1:], name="image")
            rgb = self.input_scale(self.to_rgb(image))
            if get_spec(self.model_name).family == "vit":
                target, sequence = vit_tap(self.backbone, rgb)
            else:
                features = keras.Model(
                    self.backbone.inputs,
                    [self.backbone.get_layer(self.target_layer).output, self.backbone.output])
                target, sequence = features(rgb)
            _CAM_MODELS[self] = keras.Model(image, [target, self.head(sequence)])
        return _CAM_MODELS[self]

    def cam_reshape(self, target):
        """Target activations as a (B, h, w, C) map: ViT tokens to the patch grid."""
        if get_spec(self.model_name).family != "vit":
            return target
        patch = self.backbone.get_layer("vit_patching_and_embedding").patch_size
        patch = patch if isinstance(patch, int) else patch[0]
        return tokens_to_grid(target, (self.input_shape[1] // patch,
                                       self.input_shape[2] // patch))

    def get_config(self):
        return {"backbone": keras.layers.serialize(self.backbone),
                "num_classes": self.num_classes, "model_name": self.model_name,
                "dropout": self.dropout, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def build_classifier(name: str, *, num_classes: int, input_shape=(224, 224, 1),
                     weights=None, dropout: float = 0.0) -> CxrClassifier:
    """The registry model ``name`` with a head of ``num_classes`` logits.

    Args:
        name: a registry name (``cxrkit models list``).
        num_classes: 1 for a single-logit binary head, else one logit per class.
        input_shape: (rows, cols, 1); the grayscale image is repeated to RGB in the model.
        weights: ``None`` (random), ``"imagenet"`` or a local preset directory / weights file
            for the backbone (see :func:`cxrkit.models.build_backbone`).
        dropout: dropout before the dense layer.
    """
    backbone = build_backbone(name, image_size=tuple(input_shape[:2]), weights=weights)
    return CxrClassifier(backbone, num_classes, model_name=name, dropout=dropout,
                         name=f"{name}_classifier")
