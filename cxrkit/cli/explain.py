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
def explain(images, model_path, out, method, class_name, preprocessing, classes) -> None:
    """Grad-CAM overlays (and predicted gaze maps) for DICOM, PNG and JPEG IMAGES.

    Prints one JSON line per image with the prediction and the files written.
    """
    from cxrkit.explain.files import explain_files
    from cxrkit.inference import load_model

    model, card = load_model(model_path, preprocessing=preprocessing,
                             class_names=classes.split(",") if classes else None)
    for record in explain_files(model, card, list(images), out, method=method,
                                class_name=class_name):
        click.echo(json.dumps(record))
