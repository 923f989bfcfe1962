"""``cxrkit data``: dataset preparation, and the phantom (demo) data sets."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Prepare datasets: raw SIIM-ACR / EGD-CXR to TFRecords, and phantom demo data."""


@data.group()
def demo() -> None:
    """Write synthetic chest X-ray sets in exactly the raw layouts of the real datasets."""


_common = [
    click.option("--out", required=True, type=click.Path(file_okay=False),
                 help="Folder to write the raw-layout data set into."),
    click.option("--seed", default=0, show_default=True, type=int,
                 help="Random seed; the same seed writes the same files."),
]


def _with_common(function):
    for option in reversed(_common):
        function = option(function)
    return function


@demo.command("siim-acr")
@_with_common
@click.option("--n", default=40, show_default=True, type=click.IntRange(min=1),
              help="Number of images (about half with a pneumothorax).")
@click.option("--size", default=1024, show_default=True, type=click.IntRange(min=32),
              help="Image side in pixels (the real images are 1024).")
def demo_siim_acr(out: str, seed: int, n: int, size: int) -> None:
    """Phantom SIIM-ACR: dicom-images-train/<study>/<series>/<ImageId>.dcm + train-rle.csv."""
    from data_prep.phantom.siim_acr import generate_siim_acr

    items = generate_siim_acr(out, n=n, size=size, seed=seed, show_progress=True)
    positives = sum(item.label for item in items)
    click.echo(f"wrote {len(items)} phantom SIIM-ACR images ({positives} with pneumothorax, "
               f"{len(items) - positives} healthy) to {out}")


@demo.command("egd-cxr")
@_with_common
@click.option("--n", default=30, show_default=True, type=click.IntRange(min=1),
              help="Number of images (Normal / CHF / pneumonia in equal shares).")
@click.option("--size", default=None, type=click.IntRange(min=64),
              help="Nominal image height in pixels [default: about 2,400-3,000, as MIMIC-CXR].")
def demo_egd_cxr(out: str, seed: int, n: int, size: int | None) -> None:
    """Phantom EGD-CXR: master_sheet.csv, fixations.csv, eye_gaze.csv and files/p../*.dcm."""
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    items = generate_egd_cxr(out, n=n, size=size, seed=seed, show_progress=True)
    counts = {d: sum(item.diagnosis == d for item in items) for d in ("Normal", "CHF",
                                                                      "pneumonia")}
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    click.echo(f"wrote {len(items)} phantom EGD-CXR images ({summary}) to {out}")


@data.command("dicom-info")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def dicom_info(files: tuple[str, ...]) -> None:
    """Decode DICOM FILES and print one JSON line each: size and pixel range.

    A quick check that real files (JPEG Baseline SIIM-ACR images, MONOCHROME1 images) decode
    with the installed pydicom / pylibjpeg. No patient attribute is printed.
    """
    import json

    from data_prep.dicom import read_dicom

    for path in files:
        pixels = read_dicom(path)
        click.echo(json.dumps({
            "file": path, "rows": pixels.shape[0], "columns": pixels.shape[1],
            "min": float(pixels.min()), "max": float(pixels.max()),
            "mean": round(float(pixels.mean()), 4),
        }))
