"""``cxrkit data``: dataset preparation, and the phantom (demo) data sets."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Prepare datasets: raw SIIM-ACR / EGD-CXR to TFRecords, and phantom demo data."""


class _Subset(click.ParamType):
    name = "balanced|N|all"

    def convert(self, value, param, ctx):
        if value in (None, "balanced") or isinstance(value, int):
            return value
        if value == "all":
            return None
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither 'balanced', a number of images nor 'all'", param,
                      ctx)
        if number < 2:
            self.fail("a class-balanced subset needs at least 2 images", param, ctx)
        return number


def _conversion_options(function):
    options = [
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Folder for the shards and manifest.json."),
        click.option("--shards", type=click.IntRange(min=1), default=None,
                     help="Shards per split [default: about 1,000 examples a shard, at least "
                          "8 from 800 examples on]."),
        click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Processes decoding images in parallel (with --runner beam: the "
                          "DirectRunner's workers)."),
        click.option("--runner", type=click.Choice(["local", "beam"]), default="local",
                     show_default=True,
                     help="local processes, or an Apache Beam pipeline (pip install -e "
                          "\".[beam]\"); both write byte-identical records."),
        click.option("--beam-options", default="", metavar="\"FLAGS\"",
                     help="Beam pipeline options, e.g. \"--runner=DataflowRunner --project=P "
                          "--region=R --temp_location=gs://B/tmp\" [default: DirectRunner on "
                          "--workers processes]."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the subset and split draws."),
        click.option("--strict", is_flag=True,
                     help="Stop at the first bad input instead of skipping and listing it."),
        click.option("--gzip", is_flag=True, help="GZIP-compress the shards."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _check_runner(runner: str, beam_options: str) -> None:
    if beam_options and runner != "beam":
        raise click.UsageError("--beam-options needs --runner beam")


def _report(manifest: dict, out: str) -> None:
    skipped = manifest["skipped"]
    for split, count in manifest["counts"].items():
        by_class = ", ".join(f"{v} {k}" for k, v in count.items() if k != "total")
        click.echo(f"{split}: {count['total']} images ({by_class})")
    click.echo(f"wrote {out}/manifest.json")
    absent = manifest.get("absent_images", {}).get("count", 0)
    if absent:
        click.echo(f"{absent} image(s) of the mask table have no file under --images: not "
                   "converted (counted in manifest.json)")
    dropped = manifest.get("gaze_rows_dropped", {}).get("total", 0)
    if dropped:
        click.echo(f"dropped {dropped} gaze row(s) with unusable values (counted per image "
                   "in manifest.json)")
    if not skipped:
        click.echo("skipped: none")
        return
    click.echo(f"skipped {len(skipped)} input(s) (all listed in manifest.json):")
    for item in skipped[:10]:
        click.echo(f"  {item['source']}: {item['reason']}")
    if len(skipped) > 10:
        click.echo(f"  ... and {len(skipped) - 10} more")


@data.command("siim-acr")
@click.option("--images", required=True, type=click.Path(),
              help="Folder of SIIM-ACR DICOMs and/or <ImageId>.png|jpg conversions "
                   "(searched at any depth).")
@click.option("--rle", "rle_csv", required=True, type=click.Path(),
              help="The mask table (train-rle.csv or stage_2_train.csv).")
@click.option("--size", type=click.IntRange(min=16), default=224, show_default=True,
              help="Side of the stored square images and masks.")
@click.option("--subset", type=_Subset(), default="balanced", show_default=True,
              help="'balanced': every positive and as many negatives (5,338 on the real "
                   "table); N: a class-balanced number of images; 'all'.")
@click.option("--split", default=None,
              help="train,validation,test as counts or fractions [default: 1,000 validation "
                   "and 1,000 test, train on the rest; small sets: 3338:1000:1000].")
@_conversion_options
def siim_acr(images, rle_csv, size, subset, split, out, shards, workers, runner, beam_options,
             seed, strict, gzip):
    """Convert raw SIIM-ACR (DICOMs + RLE table) to sharded TFRecords with a manifest."""
    _check_runner(runner, beam_options)
    from data_prep.siim_acr.convert import convert_siim_acr

    manifest = convert_siim_acr(images, rle_csv, out, size=size, subset=subset, split=split,
                                shards=shards, workers=workers, seed=seed, strict=strict,
                                compression="GZIP" if gzip else None, show_progress=True,
                                runner=runner, beam_options=beam_options)
    _report(manifest, out)


class _Size(click.ParamType):
    name = "ROWSxCOLS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            rows, cols = (int(v) for v in str(value).lower().split("x"))
        except ValueError:
            self.fail(f"{value!r} is not ROWSxCOLS, e.g. 640x512", param, ctx)
        if rows < 16 or cols < 16:
            self.fail("both sides must be at least 16 pixels", param, ctx)
        return rows, cols


@data.command("egd-cxr")
@click.option("--master-sheet", required=True, type=click.Path(), help="master_sheet.csv")
@click.option("--eye-gaze", type=click.Path(), default=None,
              help="eye_gaze.csv: raw 60 Hz samples (the 2024 study's source).")
@click.option("--fixations", type=click.Path(), default=None, help="fixations.csv instead.")
@click.option("--images", required=True, type=click.Path(),
              help="MIMIC-CXR root that the master sheet's path column is relative to.")
@click.option("--size", type=_Size(), default="640x512", show_default=True,
              help="Stored image and heatmap size, rows x columns.")
@click.option("--placement", type=click.Choice(["centre", "fit"]), default="centre",
              show_default=True,
              help="centre: each image centred unscaled on a fixed --canvas, cropped where it "
                   "overflows, the canvas resampled to --size (the authors' code); fit: scaled "
                   "to fit --size, padded bottom/right.")
@click.option("--canvas", type=_Size(), default="3200x2560", show_default=True,
              help="The centring canvas in original pixels, rows x columns.")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Gaussian sigma in original pixels [default: 75.5, the study's 501-px kernel].")
@click.option("--weight", type=click.Choice(["count", "duration"]), default="count",
              show_default=True, help="Count gaze points, or weight them by fixation duration.")
@click.option("--test", type=click.IntRange(min=0), default=100, show_default=True,
              help="Images in the test split (whole patients).")
@click.option("--val", type=click.IntRange(min=0), default=None,
              help="Images in the validation split (whole patients) [default: about 10 % of "
                   "the images left after the test split].")
@_conversion_options
def egd_cxr(master_sheet, eye_gaze, fixations, images, size, placement, canvas, sigma, weight,
            test, val, out, shards, workers, runner, beam_options, seed, strict, gzip):
    """Convert raw EGD-CXR (master sheet, gaze, MIMIC-CXR DICOMs) to TFRecords + heatmaps."""
    from data_prep.egd_cxr.convert import convert_egd_cxr
    from data_prep.egd_cxr.heatmap import STUDY_SIGMA

    if (eye_gaze is None) == (fixations is None):
        raise click.UsageError("give exactly one of --eye-gaze and --fixations")
    _check_runner(runner, beam_options)
    manifest = convert_egd_cxr(
        master_sheet, eye_gaze or fixations, images, out,
        gaze_source="eye_gaze" if eye_gaze else "fixations", target=size,
        placement=placement, canvas=canvas, sigma=sigma or STUDY_SIGMA, weight=weight,
        test=test, val=val, shards=shards, workers=workers, seed=seed, strict=strict,
        compression="GZIP" if gzip else None, show_progress=True, runner=runner,
        beam_options=beam_options)
    _report(manifest, out)


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
    with the installed pydicom / pylibjpeg. A file that does not decode gets a line with its
    problem ({"file": ..., "error": ...}) and the others are still read; the exit status is 1
    when any failed. No patient attribute is printed.
    """
    import json

    from cxrkit.errors import InputError
    from cxrkit.preprocessing import read_dicom

    failed = 0
    for path in files:
        try:
            pixels = read_dicom(path)
        except InputError as err:
            failed += 1
            click.echo(json.dumps({"file": path, "error": err.problem}))
            continue
        click.echo(json.dumps({
            "file": path, "rows": pixels.shape[0], "columns": pixels.shape[1],
            "min": float(pixels.min()), "max": float(pixels.max()),
            "mean": round(float(pixels.mean()), 4),
        }))
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} file(s) could not be read")
