"""``cxrkit export`` and ``cxrkit predict``: TensorFlow Serving exports and their use."""

from __future__ import annotations

import json

import click


def gaze_source(table, card):
    """The gaze input of ``--gaze TABLE`` on ``card``'s grid (a GazeSource)."""
    from data_prep.egd_cxr.gaze_table import dwell_source

    return dwell_source(table, card.preprocessing)


@click.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--name", required=True, help="Model name (the folder TF Serving serves).")
@click.option("--version", type=click.IntRange(min=1), default=None,
              help="Version number [default: the next free one].")
@click.option("--to", "to", default="saved_models", show_default=True,
              type=click.Path(file_okay=False), help="Root of the TF Serving model folders.")
def export(source, name, version, to) -> None:
    """Export a run directory's model (or a .keras file with its card) as a SavedModel.

    Writes TO/NAME/VERSION/ with the signatures serving_default (float image) and
    predict_image_bytes (encoded PNG/JPEG), and TO/models.config.
    """
    from cxrkit.serving.export import export_model

    target = export_model(source, name, version=version, to=to)
    click.echo(f"exported {target} (check it: saved_model_cli show --dir {target} --all)")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", "saved_model", type=click.Path(file_okay=False, exists=True),
              default=None, help="An exported version folder, saved_models/NAME/VERSION.")
@click.option("--server", default=None, help="TensorFlow Serving REST URL, e.g. "
              "http://localhost:8501 (with --name).")
@click.option("--name", default=None, help="Model name on the server.")
@click.option("--card", type=click.Path(exists=True), default=None,
              help="With --server: the export's version folder or its "
                   "assets.extra/cxrkit_card.json (needed for DICOMs).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="With --model: write saliency / Grad-CAM overlay PNGs here.")
@click.option("--gaze", "gaze_table", type=click.Path(exists=True, dir_okay=False),
              default=None, help="For a model that takes gaze (GazeGNN): an EGD-CXR gaze table "
              "(fixations.csv / eye_gaze.csv) with rows for each image's DICOM_ID, its file "
              "name without the extension.")
def predict(images, saved_model, server, name, card, out, gaze_table) -> None:
    """Predict DICOM, PNG and JPEG IMAGES: one JSON line per image."""
    from cxrkit.serving import predict as serving

    if (saved_model is None) == (server is None):
        raise click.UsageError("give either --model SAVED_MODEL_DIR or --server URL --name N")
    if server is not None:
        if not name:
            raise click.UsageError("--server needs --name")
        if gaze_table and not card:
            raise click.UsageError("--gaze with --server needs --card (the gaze map is "
                                   "computed on the model's grid)")
        model_card = serving.read_card(card) if card else None
        gaze = gaze_source(gaze_table, model_card) if gaze_table else None
        records = serving.predict_server(list(images), server, name, card=model_card,
                                         gaze=gaze)
    else:
        gaze = gaze_source(gaze_table, serving.read_card(saved_model)) if gaze_table else None
        records = serving.predict_local(list(images), saved_model, out=out, gaze=gaze)
    for record in records:
        click.echo(json.dumps(record))
