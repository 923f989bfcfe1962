"""One preprocessing object per dataset convention: the single definition of what a model sees.

Each convention is a small registered class (in the spirit of keras-hub's ``ImageConverter``):

- :meth:`~Preprocessing.record_image` — raw pixels to the 8-bit image the converter stores;
- :meth:`~Preprocessing.normalise` — what the reader applies to a stored image (TensorFlow);
- :meth:`~Preprocessing.prepare` — raw pixels to model input, defined as the composition of the
  two, so inference is training-identical by construction;
- :meth:`~Preprocessing.from_bytes` — the in-graph path of the serving signatures (encoded
  PNG/JPEG to model input), where TensorFlow has the ops (``None`` otherwise);
- :meth:`~Preprocessing.get_config` / :func:`from_config` — what manifests and model cards store.

Conventions: ``siim-acr`` (:class:`SiimAcrPreprocessing`, the 2023 study) and ``egd-cxr``
(:class:`EgdCxrPreprocessing`, the 2024 study). :func:`read_image` reads the raw files (DICOM,
PNG, JPEG) that :meth:`~Preprocessing.prepare` takes.

This package imports no TensorFlow at module import (the converters' worker processes use it);
the TensorFlow methods import it when called.
"""

from cxrkit.preprocessing.base import PREPROCESSING, Preprocessing, from_config, register
from cxrkit.preprocessing.egd_cxr import STUDY_CANVAS, EgdCxrPreprocessing, Geometry
from cxrkit.preprocessing.intensity import clahe, min_max, to_uint8
from cxrkit.preprocessing.raw_files import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    read_dicom,
    read_dicom_uid,
    read_image,
)
from cxrkit.preprocessing.siim_acr import SiimAcrPreprocessing

__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "PREPROCESSING", "STUDY_CANVAS",
           "EgdCxrPreprocessing", "Geometry", "Preprocessing", "SiimAcrPreprocessing", "clahe",
           "from_config", "min_max", "read_dicom", "read_dicom_uid", "read_image", "register",
           "to_uint8"]
