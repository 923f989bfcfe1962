"""Demo records: a recipe's ``[demo]`` phantom set, generated in the raw layout and converted.

``cxrkit recipe run NAME`` without ``--data`` calls :func:`prepare_demo_records` and hands the
records folder to the recipe engine, which itself never generates data. Keys of ``[demo]``:

- ``siim-acr``: ``images``, ``size`` (phantom side), ``target`` (record side), ``split``,
  ``seed``;
- ``egd-cxr``: ``images``, ``size`` (phantom rows), ``target`` ([rows, cols]), ``canvas``
  ([rows, cols] of the centring canvas in phantom pixels, the study's 3200 x 2560 scaled to
  the phantom), ``sigma`` (gaze sigma in phantom pixels), ``test``, ``val``, ``seed``.
"""

from __future__ import annotations

from pathlib import Path

from cxrkit.errors import CxrkitError

KEYS = {"siim-acr": ("images", "size", "target", "split", "seed"),
        "egd-cxr": ("images", "size", "target", "canvas", "sigma", "test", "val", "seed")}


def prepare_demo_records(dataset: str, demo: dict, folder: Path, echo=print) -> Path:
    """Generates and converts the phantom set under ``folder``; returns the records folder
    (reused when a previous run already made it)."""
    if dataset not in KEYS:
        raise CxrkitError(f"no demo data for dataset {dataset!r}")
    missing = [k for k in KEYS[dataset] if k not in demo]
    if missing:
        raise CxrkitError(f"recipe: [demo] lacks {', '.join(missing)} (needed to generate "
                          f"phantom {dataset} data)")
    records, raw = folder / "records", folder / "raw"
    if (records / "manifest.json").is_file():
        echo(f"demo data: reusing {records}")
        return records
    echo(f"demo data: generating {demo['images']} phantom {dataset} images in {raw}")
    if dataset == "siim-acr":
        from data_prep.phantom.siim_acr import generate_siim_acr
        from data_prep.siim_acr.convert import convert_siim_acr

        generate_siim_acr(raw, n=demo["images"], size=demo["size"], seed=demo["seed"],
                          show_progress=True)
        convert_siim_acr(raw, raw / "train-rle.csv", records, size=demo["target"],
                         subset=None, split=demo["split"], seed=demo["seed"],
                         show_progress=True)
    else:
        from data_prep.egd_cxr.convert import convert_egd_cxr
        from data_prep.phantom.egd_cxr import generate_egd_cxr

        generate_egd_cxr(raw, n=demo["images"], size=demo["size"], seed=demo["seed"],
                         show_progress=True)
        convert_egd_cxr(raw / "master_sheet.csv", raw / "eye_gaze.csv", raw, records,
                        target=tuple(demo["target"]), canvas=tuple(demo["canvas"]),
                        sigma=demo["sigma"], test=demo["test"],
                        val=demo["val"], seed=demo["seed"], show_progress=True)
    return records
