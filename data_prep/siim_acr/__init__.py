"""SIIM-ACR Pneumothorax Segmentation: run-length masks and their CSV tables."""

from data_prep.siim_acr.rle import RLEError, rle_decode, rle_encode
from data_prep.siim_acr.rle_csv import RleTable, read_rle_csv

__all__ = ["RLEError", "RleTable", "read_rle_csv", "rle_decode", "rle_encode"]
