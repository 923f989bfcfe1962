"""tf.data readers of the TFRecord folders that ``cxrkit data siim-acr|egd-cxr`` write.

:func:`load` reads ``manifest.json`` to learn the records' preprocessing convention and
shards and yields dicts:

* ``image``: float32 (H, W, 1), normalised by the convention's ``normalise``
  (:mod:`cxrkit.preprocessing`): SIIM-ACR per-image z-score (MLMI 2023), EGD-CXR [0, 1]
  (MLMI 2024);
* ``mask`` (SIIM-ACR, 0/1) or ``heatmap`` (EGD-CXR, [0, 1]): float32 (H, W, 1);
* ``label``: int32; ``image_id``: string (and ``patient_id`` for EGD-CXR).

Augmentation (MLMI 2023: Gaussian noise, rotation up to 10 degrees, horizontal flip,
brightness/contrast shifts) is done with TensorFlow ops on each example; geometric changes
apply identically to the image and its mask/heatmap, intensity changes to the image only.
:func:`augmentation_layers` offers the same augmentation as Keras layers to run inside a model
(on the accelerator) for image-only training.
"""

from cxrkit.data.augmentation_layers import augmentation_layers
from cxrkit.data.reader import load, preprocessing_of, read_manifest

__all__ = ["augmentation_layers", "load", "preprocessing_of", "read_manifest"]
