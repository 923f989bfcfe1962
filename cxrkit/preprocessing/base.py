"""The :class:`Preprocessing` contract and the registry of conventions by name."""

from __future__ import annotations

import numpy as np

from cxrkit.errors import CxrkitError

PREPROCESSING: dict[str, type[Preprocessing]] = {}


def register(cls: type[Preprocessing]) -> type[Preprocessing]:
    """Class decorator: makes a convention known by its ``name`` (manifests, cards, CLI)."""
    PREPROCESSING[cls.name] = cls
    return cls


def from_config(config: dict) -> Preprocessing:
    """The convention a ``get_config()`` dict describes; :class:`CxrkitError` if unknown."""
    if not isinstance(config, dict) or config.get("name") not in PREPROCESSING:
        name = config.get("name") if isinstance(config, dict) else config
        raise CxrkitError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSING)}")
    params = {k: v for k, v in config.items() if k != "name"}
    try:
        return PREPROCESSING[config["name"]](**params)
    except (TypeError, ValueError) as err:
        raise CxrkitError(f"preprocessing {config['name']!r}: {err}") from None


class Preprocessing:
    """A dataset convention (see the package docstring).

    Args:
        size: (rows, cols) of the stored images and of the model input.

    Class attributes a convention sets: ``name``; ``target`` (the record's per-pixel target,
    ``"mask"`` or ``"heatmap"``) with ``target_dtype`` (``"uint8"``/``"uint16"``, stored as
    PNG and divided by the dtype's maximum on reading); ``id_features`` (the bytes features
    the reader passes through).
    """

    name: str = ""
    target: str = ""
    target_dtype: str = "uint8"
    id_features: tuple[str, ...] = ("image_id",)

    def __init__(self, size):
        rows, cols = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if rows < 1 or cols < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        self.size = (rows, cols)

    # --- what the converter stores (numpy) --------------------------------------------------
    def record_image(self, pixels: np.ndarray) -> np.ndarray:
        """Raw grayscale pixels (any range, (rows, cols)) to the stored uint8 image."""
        raise NotImplementedError

    @property
    def target_scale(self) -> float:
        """The stored target's full scale (255 or 65535): stored value / scale is in [0, 1]."""
        return float(np.iinfo(self.target_dtype).max)

    # --- what the reader applies (TensorFlow) ------------------------------------------------
    def normalise(self, image):
        """A stored image as a float32 (rows, cols, 1) tensor to the model's input scale."""
        raise NotImplementedError

    # --- both: raw pixels to model input -----------------------------------------------------
    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels to exactly the tensor the reader yields for the converted record:
        ``normalise(record_image(pixels))``, float32 (rows, cols, 1)."""
        import tensorflow as tf

        stored = tf.constant(self.record_image(pixels)[..., None], tf.float32)
        return self.normalise(stored).numpy()

    # --- in-graph serving path ---------------------------------------------------------------
    def from_bytes(self, encoded):
        """(B,) encoded PNG/JPEG strings to a (B, rows, cols, 1) model-input batch inside a
        TensorFlow graph (conventions whose steps all have TensorFlow ops override this)."""
        raise NotImplementedError(f"{self.name} has no in-graph bytes path")

    @property
    def serves_bytes(self) -> bool:
        """Whether :meth:`from_bytes` is implemented (exports then add a bytes signature)."""
        return type(self).from_bytes is not Preprocessing.from_bytes

    # --- serialisation -----------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "size": list(self.size)}

    def __eq__(self, other) -> bool:
        return isinstance(other, Preprocessing) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(self.get_config()))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({params})"
