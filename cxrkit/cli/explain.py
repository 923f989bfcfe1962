"""``cxrkit explain``: Grad-CAM (and variants) overlays for image files."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", "model_path", required=True, type=click.Path(),
              help="A saved .keras model (with its .card.json) or a run directory.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the overlay PNGs and predictions.jsonl.")
@click.option("--method", type=click.Choice(["gradcam", "gradcam++", "hirescam"]),
              default="gradcam", show_default=True)
@click.option("--class", "class_name", default=None,
              help="Explain this class instead of each image's predicted one.")
@click.option("--preprocessing", default=None, metavar="NAME",
              help="For a .keras model without its model card: the training data convention "
                   "(siim-acr or egd-cxr).")
@click.option("--classes", default=None, metavar="A,B,...",
              help="For a .keras model without its model card: the class names.")
@click.option("--gaze", "gaze_table", type=click.Path(exists=True, dir_okay=False),
              default=None, help="For a model that takes gaze (GazeGNN): an EGD-CXR gaze table "
              "with rows for each image's DICOM_ID (its file name without the extension).")
def explain(images, model_path, out, method, class_name, preprocessing, classes,
            gaze_table) -> None:
    """Grad-CAM overlays (and predicted gaze maps) for DICOM, PNG and JPEG IMAGES.

    Prints one JSON line per image with the prediction and the files written.
    """
    from cxrkit.cli.serving import gaze_source
    from cxrkit.explain.files import explain_files
    from cxrkit.inference import load_model

    model, card = load_model(model_path, preprocessing=preprocessing,
                             class_names=classes.split(",") if classes else None)
    gaze = gaze_source(gaze_table, card) if gaze_table else None
    for record in explain_files(model, card, list(images), out, method=method,
                                class_name=class_name, gaze=gaze):
        click.echo(json.dumps(record))
