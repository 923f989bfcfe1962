"""Converters from the raw public datasets (SIIM-ACR, EGD-CXR) to sharded TFRecords.

Also holds the readers of the raw formats (DICOM, run-length masks) and the phantom generators
that write synthetic data in exactly the raw layouts, so every converter runs unchanged on real
and demo data. Nothing here imports TensorFlow at module import time.
"""
