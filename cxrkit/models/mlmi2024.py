"""The MLMI 2024 three-stage network and the models each stage trains.

The network is made of four parts, each a Keras model of its own so that a recipe can train,
freeze, save and hand them on one by one (docs/study.md, 2024 §4.2):

- ``densenet`` — :func:`~cxrkit.models.densenet_encoder.build_densenet_encoder`;
- ``densenet_head`` — the stage-1 classifier head on DenseNet201's final features;
- ``unet`` — the (dual-encoder) Res-SE-UNet of :func:`~cxrkit.models.unet.build_unet`;
- ``fusion`` — :func:`build_fusion_head`: GAP(DenseNet201 final features, 1920) ⊕
  GAP(last decoder features, 64) → Dense 64 → Dropout 0.25 → ReLU → Dense 3.

The stage models wire the parts: :func:`encoder_model` (stage 1: triplet embedding and
logits), :func:`saliency_model` (stage 2) and :class:`GazeDiagnosisNet` (stage 3, and the
model that is exported: class logits and the predicted gaze map).
"""

from __future__ import annotations

import weakref

import keras

from cxrkit.models.densenet_encoder import FEATURES, build_dense_head, build_densenet_encoder
from cxrkit.models.unet import FILTERS, build_unet

_CAM_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_fusion_head(num_classes: int = 3, *, dense_channels: int = FEATURES,
                      decoder_channels: int = 64, hidden: int = 64, dropout: float = 0.25,
                      name: str = "fusion") -> keras.Model:
    """The stage-3 multi-scale fusion head (inputs ``features`` and ``decoder_features``)."""
    features = keras.Input((None, None, dense_channels), name="features")
    decoder = keras.Input((None, None, decoder_channels), name="decoder_features")
    x = keras.layers.Concatenate(name="fuse")([
        keras.layers.GlobalAveragePooling2D(name="pool_dense")(features),
        keras.layers.GlobalAveragePooling2D(name="pool_decoder")(decoder)])
    x = keras.layers.Dense(hidden, name="hidden")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.ReLU(name="relu")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model({"features": features, "decoder_features": decoder}, logits, name=name)


def build_parts(input_shape=(640, 512, 1), *, num_classes: int = 3,
                unet_filters=FILTERS, unet_block: str = "res_se",
                dual_encoder: bool = True, densenet_weights=None,
                densenet_blocks=None) -> dict[str, keras.Model]:
    """Fresh ``densenet``, ``densenet_head``, ``unet`` and ``fusion`` parts (DenseNet201, or
    a DenseNet of ``densenet_blocks``; the other parts take its widths)."""
    densenet = build_densenet_encoder(input_shape, weights=densenet_weights,
                                      blocks=densenet_blocks)
    width = int(densenet.output["features"].shape[-1])
    return {
        "densenet": densenet,
        "densenet_head": build_dense_head(num_classes, channels=width),
        "unet": build_unet(input_shape, filters=unet_filters, block=unet_block,
                           dual_channels=width if dual_encoder else None),
        "fusion": build_fusion_head(num_classes, dense_channels=width,
                                    decoder_channels=unet_filters[0]),
    }


def _image_input(part: keras.Model):
    """A new ``image`` input shaped like the part's own ``image`` input."""
    (image,) = [t for t in part.inputs if t.name == "image"] or part.inputs[:1]
    return keras.Input(image.shape[1:], name="image")


def encoder_model(densenet: keras.Model, densenet_head: keras.Model) -> keras.Model:
    """Stage 1: ``image -> {"embedding_map": block4 (stride 32, 1920), "embedding":
    GAP(block4) (1920), "logits": head(features)}``. The triplet loss of the authors' code
    works on the unpooled map; the pooled vector is the other option."""
    image = _image_input(densenet)
    maps = densenet(image)
    embedding_map = keras.layers.Identity(name="embedding_map")(maps["block4"])
    embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(maps["block4"])
    logits = keras.layers.Identity(name="logits")(densenet_head(maps["features"]))
    return keras.Model(image, {"embedding_map": embedding_map, "embedding": embedding,
                               "logits": logits}, name="encoder")


def _is_dual(unet: keras.Model) -> bool:
    return any(t.name == "block4" for t in unet.inputs)


def saliency_model(densenet: keras.Model | None, unet: keras.Model) -> keras.Model:
    """Stage 2: ``image -> {"saliency"}``; ``densenet`` feeds a dual-encoder UNet (else None)."""
    image = _image_input(unet)
    if _is_dual(unet):
        if densenet is None:
            raise ValueError("a dual-encoder UNet needs the DenseNet201 encoder")
        out = unet({"image": image, "block4": densenet(image)["block4"]})
    else:
        out = unet(image)
    saliency = keras.layers.Identity(name="saliency")(out["saliency"])
    return keras.Model(image, {"saliency": saliency}, name="saliency_model")


@keras.saving.register_keras_serializable(package="cxrkit")
class GazeDiagnosisNet(keras.Model):
    """The three-stage network: ``image -> {"logits", "saliency"}``.

    Args:
        densenet, unet, fusion: the parts (see the module docstring).

    Grad-CAM's target is the DenseNet201 final features (``relu``), as for the DenseNet201
    classifier; :meth:`cam_model` gives ``image -> (features, logits, {"saliency"})``.
    """

    def __init__(self, densenet: keras.Model, unet: keras.Model, fusion: keras.Model,
                 **kwargs):
        self.densenet, self.unet, self.fusion = densenet, unet, fusion
        image = _image_input(densenet)
        features, out = self._forward(image)
        logits = fusion({"features": features, "decoder_features": out["decoder_features"]})
        logits = keras.layers.Identity(name="logits")(logits)
        saliency = keras.layers.Identity(name="saliency")(out["saliency"])
        super().__init__(inputs=image, outputs={"logits": logits, "saliency": saliency},
                         **kwargs)

    def _forward(self, image):
        maps = self.densenet(image)
        if _is_dual(self.unet):
            return maps["features"], self.unet({"image": image, "block4": maps["block4"]})
        return maps["features"], self.unet(image)

    def cam_model(self) -> keras.Model:
        """A weight-sharing ``image -> (DenseNet201 final features, logits, {"saliency"})``
        model: Grad-CAM's pass also gives the predicted gaze map (one forward for a served
        request)."""
        if self not in _CAM_MODELS:
            image = _image_input(self.densenet)
            features, out = self._forward(image)
            logits = self.fusion({"features": features,
                                  "decoder_features": out["decoder_features"]})
            _CAM_MODELS[self] = keras.Model(image, [features, logits,
                                                    {"saliency": out["saliency"]}])
        return _CAM_MODELS[self]

    def get_config(self):
        return {"densenet": keras.layers.serialize(self.densenet),
                "unet": keras.layers.serialize(self.unet),
                "fusion": keras.layers.serialize(self.fusion), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for part in ("densenet", "unet", "fusion"):
            config[part] = keras.layers.deserialize(config[part])
        return cls(**config)
