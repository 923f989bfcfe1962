"""One preprocessing per dataset: ``prepare`` equals the training records bit for bit;
model cards; ``cxrkit explain`` on files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxrkit.card import ModelCard, card_path
from cxrkit.cli import cli
from cxrkit.data import load
from cxrkit.errors import CxrkitError, InputError
from cxrkit.models import build_classifier
from cxrkit.preprocessing import (
    EgdCxrPreprocessing,
    SiimAcrPreprocessing,
    from_config,
    read_image,
)
from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.siim_acr.convert import convert_siim_acr


def _records(out, split):
    return {r["image_id"].numpy().decode(): r["image"].numpy() for r in load(out, split)}


def _convert_siim(src, out):
    convert_siim_acr(src, Path(src) / "train-rle.csv", out, size=48, subset=None, split="1,0,0")
    return SiimAcrPreprocessing(48), "image_id"


def _convert_egd(src, out):
    convert_egd_cxr(Path(src) / "master_sheet.csv", Path(src) / "eye_gaze.csv", src, out,
                    target=(40, 32), canvas=(160, 128), test=0, val=0, sigma=20.0)
    return EgdCxrPreprocessing((40, 32), canvas=(160, 128)), "dicom_id"


@pytest.mark.parametrize(("phantom", "convert"), [("siim_phantom", _convert_siim),
                                                  ("egd_phantom", _convert_egd)])
def test_prepare_reproduces_the_training_inputs_bit_for_bit(phantom, convert, request,
                                                            tmp_path):
    """A raw file through ``prepare`` is exactly what the reader yields for its record: the
    PNG round trip of the stored uint8 image is lossless and both paths then run the same
    ``normalise`` op, so no tolerance is needed."""
    src, items = request.getfixturevalue(phantom)
    pre, id_field = convert(src, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert from_config(manifest["preprocessing"]) == pre
    records = _records(tmp_path, "train")
    for item in items[:4]:
        np.testing.assert_array_equal(pre.prepare(read_image(item.path)),
                                      records[getattr(item, id_field)])


def test_preprocessing_config_round_trips_and_names_unknown_conventions():
    for pre in (SiimAcrPreprocessing((64, 48), clip_limit=3.0, tiles=4),
                EgdCxrPreprocessing((40, 32), "fit"),
                EgdCxrPreprocessing((40, 32), canvas=(9, 7))):
        again = from_config(json.loads(json.dumps(pre.get_config())))
        assert again == pre and type(again) is type(pre)
    assert SiimAcrPreprocessing(64).get_config() == {"name": "siim-acr", "size": [64, 64],
                                                     "clip_limit": 2.0, "tiles": 8}
    assert EgdCxrPreprocessing().get_config() == {"name": "egd-cxr", "size": [640, 512],
                                                  "placement": "centre", "canvas": [3200, 2560]}
    with pytest.raises(CxrkitError, match="unknown preprocessing 'nih'; known: egd-cxr, siim-acr"):
        from_config({"name": "nih", "size": [8, 8]})
    with pytest.raises(CxrkitError, match="preprocessing 'egd-cxr'"):
        from_config({"name": "egd-cxr", "size": [8, 8], "clahe": True})


def test_siim_record_image_by_hand():
    """The stored SIIM image against an independent OpenCV/numpy transcription of the
    study's recipe, and the z-score of ``normalise`` against numpy."""
    rng = np.random.default_rng(0)
    pixels = rng.normal(1000.0, 200.0, (96, 80)).astype(np.float32)
    scaled = np.round((pixels - pixels.min()) * 255 / np.ptp(pixels)).astype(np.uint8)
    equalised = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(scaled)
    want = cv2.resize(equalised, (24, 32), interpolation=cv2.INTER_AREA)
    pre = SiimAcrPreprocessing((32, 24))
    np.testing.assert_array_equal(pre.record_image(pixels), want)
    z = (want - want.mean()) / want.std()
    np.testing.assert_allclose(pre.prepare(pixels)[..., 0], z, atol=1e-5)


def test_explain_command_on_dicom_png_and_jpeg(siim_phantom, tmp_path):
    src, items = siim_phantom
    model = build_classifier("resnet18", num_classes=2, input_shape=(64, 64, 1))
    model.save(tmp_path / "model.keras")
    ModelCard(SiimAcrPreprocessing(64), ("healthy", "pneumothorax")).save(
        card_path(tmp_path / "model.keras"))
    pixels = read_image(items[0].path)
    gray = np.round(255 * (pixels - pixels.min()) / np.ptp(pixels)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), gray)
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    inputs = [items[1].path, str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    result = CliRunner().invoke(cli, ["explain", *inputs, "--model", str(tmp_path),
                                      "--out", str(tmp_path / "out"), "--class", "pneumothorax"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["file"] for r in lines] == inputs
    for record in lines:
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
        assert record["explained_class"] == "pneumothorax"
        png = cv2.imread(record["overlay"])
        assert png.shape == (64, 64, 3)
    # PNG and JPEG of the same pixels give (almost) the same prediction
    assert lines[1]["probabilities"]["healthy"] == pytest.approx(
        lines[2]["probabilities"]["healthy"], abs=0.05)
    bad = CliRunner().invoke(cli, ["explain", str(tmp_path / "missing.png"), "--model",
                                   str(tmp_path), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 1 and "missing.png: image not found" in bad.output


def test_model_card_round_trip_and_errors(tmp_path):
    card = ModelCard(EgdCxrPreprocessing((40, 32)), ("Normal", "CHF", "pneumonia"), "mlmi2024")
    path = card.save(tmp_path / "m.card.json")
    assert ModelCard.load(path) == card and card.input_size == (40, 32)
    with pytest.raises(InputError, match="model card not found"):
        ModelCard.load(tmp_path / "missing.card.json")
    for text, message in [("{}", "not a valid model card"),
                          ("{not json", "model card is not valid JSON"),
                          ('{"preprocessing": {"name": "x"}, "class_names": []}',
                           "unknown preprocessing 'x'")]:
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            ModelCard.load(path)


def test_explain_a_model_saved_without_a_card(tmp_path, siim_phantom):
    src, items = siim_phantom
    model = build_classifier("resnet18", num_classes=1, input_shape=(64, 64, 1))
    model.save(tmp_path / "own.keras")
    missing = CliRunner().invoke(cli, ["explain", items[0].path, "--model",
                                       str(tmp_path / "own.keras"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "--preprocessing" in missing.output
    result = CliRunner().invoke(cli, ["explain", items[0].path, "--model",
                                      str(tmp_path / "own.keras"), "--out", str(tmp_path / "o"),
                                      "--preprocessing", "siim-acr", "--classes",
                                      "healthy,pneumothorax"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[-1])
    assert set(record["probabilities"]) == {"healthy", "pneumothorax"}


def test_a_model_that_needs_gaze_says_so(tmp_path, egd_phantom):
    """GazeGNN takes the gaze as a second input: explain without --gaze names it, and a card
    that does not say so is refused before anything fails inside Keras."""
    from cxrkit.models.gazegnn import build_gazegnn

    src, items = egd_phantom
    model = build_gazegnn((64, 64, 1), 3, image_size=64, channels=(8, 16, 24, 32),
                          blocks=(1, 1, 1, 1))
    model.save(tmp_path / "gazegnn.keras")
    explain = ["explain", items[0].path, "--model", str(tmp_path / "gazegnn.keras"),
               "--out", str(tmp_path / "o")]
    ModelCard(EgdCxrPreprocessing((64, 64)), ("Normal", "CHF", "pneumonia"),
              "gazegnn").save(tmp_path / "gazegnn.card.json")
    result = CliRunner().invoke(cli, explain)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "takes the radiologist's gaze as a second input; pass --gaze TABLE" in result.output
    ModelCard(EgdCxrPreprocessing((64, 64)), ("Normal", "CHF", "pneumonia"),
              "classifier").save(tmp_path / "gazegnn.card.json")
    for args in (explain, ["export", str(tmp_path / "gazegnn.keras"), "--name", "g",
                           "--to", str(tmp_path / "s")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert (f"{tmp_path / 'gazegnn.card.json'}: model card says task 'classifier', but the "
                "model takes 'gaze' input") in result.output
