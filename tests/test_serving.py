"""SavedModel export, both signatures against the Keras model, saved_model_cli, predict."""

from __future__ import annotations

import base64
import contextlib
import glob
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from cxrkit.card import ModelCard, card_path
from cxrkit.cli import cli
from cxrkit.errors import CxrkitError
from cxrkit.models import GazeDiagnosisNet, build_classifier, build_parts
from cxrkit.preprocessing import EgdCxrPreprocessing, SiimAcrPreprocessing, read_image
from cxrkit.serving import export_model, predict_local
from cxrkit.serving.export import CARD_NAME, build_servable, export_servable, stage_export

EGD = ("Normal", "CHF", "pneumonia")
SIZE = (32, 32)
CANVAS = (160, 160)  # the study's 3200 x 2560 scaled to the ~160-row phantoms


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained mlmi2024 network (DenseNet of one layer per block, narrow UNet) and a
    ResNet18 classifier, each saved with an egd-cxr card and exported."""
    root = tmp_path_factory.mktemp("serving")
    keras.utils.set_random_seed(0)
    parts = build_parts((*SIZE, 1), unet_filters=(8, 16, 32, 64, 128),
                        densenet_blocks=[1, 1, 1, 1])
    net = GazeDiagnosisNet(parts["densenet"], parts["unet"], parts["fusion"])
    x = np.random.default_rng(0).random((4, *SIZE, 1), dtype="float32")
    net.compile("adam", loss={"logits": keras.losses.SparseCategoricalCrossentropy(
        from_logits=True)}, run_eagerly=True)
    net.train_on_batch(x, {"logits": np.array([0, 1, 2, 0])})
    classifier = build_classifier("resnet18", num_classes=3, input_shape=(*SIZE, 1))
    models = {"mlmi2024": net, "resnet18": classifier}
    folders = {}
    for name, model in models.items():
        (root / name).mkdir()
        model.save(root / name / "model.keras")
        task = "mlmi2024" if name == "mlmi2024" else "classifier"
        ModelCard(EgdCxrPreprocessing(SIZE, canvas=CANVAS), EGD, task=task).save(
            card_path(root / name / "model.keras"))
        folders[name] = export_model(root / name, name, to=root / "saved_models")
    return root, models, folders


@contextlib.contextmanager
def rest_stand_in(answer):
    """A local stand-in for TF Serving's REST predict API: ``answer(path, body)`` gives the
    one prediction of a request; yields the server's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"predictions": [answer(self.path, body)]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def _reference_gradcam(model, x: np.ndarray) -> np.ndarray:
    """Grad-CAM of the predicted class, eagerly through the parts' own layers: the DenseNet
    ``features`` of the mlmi2024 network, ResNet18's ``stack3_block1_out``."""
    image = tf.constant(x)
    if isinstance(model.output, dict):  # GazeDiagnosisNet
        maps = model.densenet(image)
        decoder = model.unet({"image": image, "block4": maps["block4"]})["decoder_features"]
        acts = maps["features"]

        def head(a):
            return model.fusion({"features": a, "decoder_features": decoder})
    else:
        layer = model.backbone.get_layer("stack3_block1_out")
        acts = keras.Model(model.backbone.inputs, layer.output)(tf.repeat(image, 3, -1))

        def head(a):
            return model.get_layer("logits")(tf.reduce_mean(a, axis=(1, 2)))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        logits = head(acts)
        score = tf.gather(logits, tf.argmax(logits, -1), batch_dims=1)
    g, a = tape.gradient(score, acts).numpy(), acts.numpy()
    cam = np.maximum((g.mean(axis=(1, 2), keepdims=True) * a).sum(-1), 0)
    low, high = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
    cam = np.where(high > low, (cam - low) / np.where(high > low, high - low, 1), 0)
    return np.clip(tf.image.resize(cam[..., None], SIZE)[..., 0].numpy(), 0, 1)


def test_layout_versions_and_models_config(exported):
    root, _, folders = exported
    assert folders["mlmi2024"] == root / "saved_models" / "mlmi2024" / "1"
    again = export_model(root / "resnet18", "resnet18", to=root / "saved_models")
    assert again.name == "2"
    config = (root / "saved_models" / "models.config").read_text()
    assert "name: 'mlmi2024'" in config and "base_path: '/models/resnet18'" in config
    with pytest.raises(CxrkitError, match="version 1 exists"):
        export_model(root / "resnet18", "resnet18", version=1, to=root / "saved_models")


@pytest.mark.parametrize("name", ["mlmi2024", "resnet18"])
def test_serving_default_reproduces_the_keras_model(exported, name):
    _, models, folders = exported
    model = models[name]
    x = np.random.default_rng(1).random((3, *SIZE, 1), dtype="float32")
    loaded = tf.saved_model.load(str(folders[name]))
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        image=tf.constant(x)).items()}
    keras_out = model.predict(x, verbose=0)
    logits = keras_out["logits"] if isinstance(keras_out, dict) else keras_out
    assert np.abs(out["probabilities"] - _softmax(logits)).max() < 1e-5
    assert [v.decode() for v in out["label"]] == [EGD[i] for i in logits.argmax(1)]
    assert out["class_names"].shape == (3, 3)
    assert np.abs(out["gradcam"] - _reference_gradcam(model, x)).max() < 1e-4
    if name == "mlmi2024":
        assert np.abs(out["saliency"] - keras_out["saliency"]).max() < 1e-5
    else:
        assert "saliency" not in out
    for wrong in (x[..., 0], x[:, :16, :16]):  # wrong rank, wrong size: a message, no crash
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"image must be a float32 batch of shape \(batch, 32, 32, 1\)"):
            loaded.signatures["serving_default"](image=tf.constant(wrong))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        loaded.signatures["serving_default"](image=tf.constant(x.astype("float64")))


def _encoded(egd_phantom, tmp_path):
    src, items = egd_phantom
    pixels = read_image(items[0].path)
    gray = np.round(255 * (pixels - pixels.min()) / np.ptp(pixels)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), gray)
    cv2.imwrite(str(tmp_path / "b.jpg"), gray, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return [tmp_path / "a.png", tmp_path / "b.jpg"]


@pytest.mark.parametrize("placement", ["centre", "fit"])
def test_bytes_preprocessing_matches_training(egd_phantom, tmp_path, placement):
    pre = EgdCxrPreprocessing((40, 32), placement, canvas=(160, 128))  # crops the wider ones
    for path in _encoded(egd_phantom, tmp_path):
        graph = pre.from_bytes(tf.constant([path.read_bytes()])).numpy()[0]
        python = pre.prepare(read_image(path))
        assert np.abs(graph - python).max() <= 1 / 255 + 1e-6  # at most one 8-bit step
        assert np.mean(graph != python) < 0.05


def test_bytes_signature_with_png_and_jpeg(exported, egd_phantom, tmp_path):
    _, models, folders = exported
    paths = _encoded(egd_phantom, tmp_path)
    loaded = tf.saved_model.load(str(folders["mlmi2024"]))
    out = loaded.signatures["predict_image_bytes"](
        image_bytes=tf.constant([p.read_bytes() for p in paths]))
    pre = EgdCxrPreprocessing(SIZE, canvas=CANVAS)
    want = models["mlmi2024"].predict(np.stack([pre.prepare(read_image(p)) for p in paths]),
                                      verbose=0)
    assert np.abs(out["probabilities"].numpy() - _softmax(want["logits"])).max() < 1e-3
    assert np.abs(out["saliency"].numpy() - want["saliency"]).max() < 1e-3


def test_saved_model_cli_lists_the_signature_names(exported):
    _, _, folders = exported
    tool = shutil.which("saved_model_cli") or str(Path(sys.executable).parent / "saved_model_cli")
    shown = subprocess.run([tool, "show", "--dir", str(folders["mlmi2024"]), "--all"],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['predict_image_bytes']",
                 "inputs['image']", "inputs['image_bytes']", "outputs['probabilities']",
                 "outputs['saliency']", "outputs['gradcam']", "outputs['label']"):
        assert text in shown.stdout


def test_predict_cli_local_and_against_a_rest_server(exported, egd_phantom, tmp_path):
    _, _, folders = exported
    src, items = egd_phantom
    paths = [str(p) for p in _encoded(egd_phantom, tmp_path)] + [items[1].path]
    result = CliRunner().invoke(cli, ["predict", *paths, "--model", str(folders["mlmi2024"]),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    local = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["file"] for r in local] == paths
    for record in local:
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert cv2.imread(record["saliency_overlay"]).shape == (*SIZE, 3)

    signatures = tf.saved_model.load(str(folders["mlmi2024"])).signatures

    def answer(path, body):
        assert path == "/v1/models/mlmi2024:predict"
        instance = body["instances"][0]
        if body["signature_name"] == "predict_image_bytes":
            out = signatures["predict_image_bytes"](
                image_bytes=tf.constant([base64.b64decode(instance["b64"])]))
        else:
            out = signatures["serving_default"](image=tf.constant([instance], tf.float32))
        prediction = {k: v.numpy()[0].tolist() for k, v in out.items()
                      if k not in ("label", "class_names")}
        prediction["class_names"] = [n.decode() for n in out["class_names"].numpy()[0]]
        prediction["label"] = out["label"].numpy()[0].decode()
        return prediction

    with rest_stand_in(answer) as url:
        remote = CliRunner().invoke(cli, ["predict", *paths, "--server", url, "--name",
                                          "mlmi2024", "--card", str(folders["mlmi2024"])])
    assert remote.exit_code == 0, remote.output
    records = [json.loads(line) for line in remote.output.splitlines() if line.startswith("{")]
    for got, want in zip(records, local, strict=True):
        assert got["label"] == want["label"]
        for k in EGD:
            assert got["probabilities"][k] == pytest.approx(want["probabilities"][k], abs=1e-3)
    down = CliRunner().invoke(cli, ["predict", paths[0], "--server", "http://127.0.0.1:9",
                                    "--name", "x"])
    assert down.exit_code == 1 and "cannot reach the server" in down.output


def test_predict_on_real_nih_pngs(exported, realdata):
    _, _, folders = exported
    pngs = sorted(glob.glob(str(realdata / "cxr-images" / "*.png")))
    assert pngs
    for record in predict_local(pngs, folders["resnet18"]):
        assert set(record["probabilities"]) == set(EGD)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert json.loads(json.dumps(record)) == record


def test_export_of_a_siim_classifier_has_no_bytes_signature(tmp_path):
    model = build_classifier("resnet18", num_classes=1, input_shape=(32, 32, 1))
    model.save(tmp_path / "model.keras")
    ModelCard(SiimAcrPreprocessing(32), ("healthy", "pneumothorax")).save(
        card_path(tmp_path / "model.keras"))
    folder = export_model(tmp_path, "ptx", to=tmp_path / "saved_models")
    signatures = tf.saved_model.load(str(folder)).signatures
    assert set(signatures) == {"serving_default"}
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 1)).astype("float32")
    p1 = 1 / (1 + np.exp(-np.asarray(model(x))[:, 0]))
    got = signatures["serving_default"](image=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, np.stack([1 - p1, p1], 1), atol=1e-5)


def test_a_staged_export_publishes_the_weights_loaded_after_it(tmp_path):
    """The side process saves the SavedModel before the final weights exist and writes them
    in when it publishes: the result serves the final weights, and its variables are, key for
    key and value for value, those of a SavedModel saved directly with them."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((*SIZE, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    card = ModelCard(EgdCxrPreprocessing(SIZE, canvas=CANVAS), EGD)
    servable = build_servable(model, card)
    to = tmp_path / "saved_models"
    staged = stage_export(servable, card, "net", to=to)
    assert staged.target == to / "net" / "1" and not staged.target.exists()
    assert not (to / "models.config").exists()  # hidden until published
    rng = np.random.default_rng(4)
    for variable in model.variables:  # the final weights, loaded after staging
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    folder = staged.publish()
    assert folder == staged.target and not staged.partial.exists()
    assert "name: 'net'" in (to / "models.config").read_text()
    assert ModelCard.load(folder / "assets.extra" / CARD_NAME) == card
    x = rng.random((2, *SIZE, 1), dtype="float32")
    got = tf.saved_model.load(str(folder)).signatures["serving_default"](image=tf.constant(x))
    np.testing.assert_allclose(got["probabilities"].numpy(),
                               _softmax(np.asarray(model(x, training=False))), atol=1e-5)
    direct = export_servable(servable, card, "direct", to=to)
    published, saved = (tf.train.load_checkpoint(str(f / "variables" / "variables"))
                        for f in (folder, direct))
    keys = set(saved.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert set(published.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"} == keys
    assert len(keys) == len(model.variables)
    for key in keys:
        np.testing.assert_array_equal(published.get_tensor(key), saved.get_tensor(key))


def test_predict_names_malformed_cards_and_folders_that_are_not_exports(exported, tmp_path):
    _, _, folders = exported
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((40, 40), np.uint8))
    copy = tmp_path / "copy"
    shutil.copytree(folders["resnet18"], copy)
    card = copy / "assets.extra" / "cxrkit_card.json"
    card.write_text("{not json")
    for args in (["--model", str(copy)],
                 ["--server", "http://127.0.0.1:9", "--name", "x", "--card", str(copy)],
                 ["--server", "http://127.0.0.1:9", "--name", "x", "--card", str(card)]):
        result = CliRunner().invoke(cli, ["predict", str(image), *args])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"Error: {card}: model card is not valid JSON" in result.output
    shutil.copy(folders["resnet18"] / "assets.extra" / "cxrkit_card.json", card)
    shutil.rmtree(copy / "variables")
    result = CliRunner().invoke(cli, ["predict", str(image), "--model", str(copy)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {copy}: cannot load the SavedModel")
    (copy / "saved_model.pb").unlink()
    result = CliRunner().invoke(cli, ["predict", str(image), "--model", str(copy)])
    assert result.exit_code == 1
    assert f"Error: {copy}: not a SavedModel version folder (no saved_model.pb)" in result.output


@pytest.fixture(scope="module")
def gazegnn_export(egd_phantom, tmp_path_factory):
    """A demo-width GazeGNN (32 px) saved with its gazegnn card and exported, and the phantom
    set converted at the same size, canvas and placement: (model, export folder, records,
    the fixations table)."""
    from cxrkit.models import build_gazegnn
    from data_prep.egd_cxr.convert import convert_egd_cxr

    src, _ = egd_phantom
    root = tmp_path_factory.mktemp("gazegnn")
    keras.utils.set_random_seed(0)
    model = build_gazegnn((*SIZE, 1), 3, image_size=32, channels=(8, 16, 24, 32),
                          blocks=(1, 1, 1, 1))
    model.save(root / "model.keras")
    ModelCard(EgdCxrPreprocessing(SIZE, canvas=CANVAS), EGD, task="gazegnn").save(
        card_path(root / "model.keras"))
    folder = export_model(root, "gazegnn", to=root / "saved_models")
    records = root / "records"
    convert_egd_cxr(src / "master_sheet.csv", src / "fixations.csv", src, records,
                    gaze_source="fixations", target=SIZE, canvas=CANVAS, sigma=3.0, test=3,
                    val=2, seed=0)
    return model, folder, records, src / "fixations.csv"


def _record_inputs(records) -> dict:
    """image_id -> (image, gaze_dwell) as the reader gives them for training."""
    from cxrkit.data import load

    out = {}
    for split in ("train", "validation", "test"):
        for example in load(records, split).as_numpy_iterator():
            out[example["image_id"].decode()] = (example["image"], example["gaze_dwell"])
    return out


def test_gazegnn_export_takes_image_and_gaze(gazegnn_export):
    from cxrkit.explain import grad_cam

    model, folder, _, _ = gazegnn_export
    rng = np.random.default_rng(4)
    inputs = {"image": rng.random((2, *SIZE, 1), dtype="float32"),
              "gaze": rng.random((2, *SIZE, 1), dtype="float32")}
    signatures = tf.saved_model.load(str(folder)).signatures
    assert set(signatures) == {"serving_default", "predict_image_bytes"}
    out = signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               _softmax(np.asarray(model(inputs))), atol=1e-5)
    np.testing.assert_allclose(out["gradcam"].numpy(), grad_cam(model, inputs), atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"gaze must be a float32 batch of shape \(batch, 32, 32, 1\), as "
                             "many as the other inputs"):
        signatures["serving_default"](image=tf.constant(inputs["image"]),
                                      gaze=tf.constant(inputs["gaze"][:1]))


def test_predict_and_explain_with_gaze_feed_what_training_saw(gazegnn_export, egd_phantom,
                                                              tmp_path):
    """`cxrkit predict --gaze` on the raw DICOMs gives the model's probabilities on the
    converted records' image and gaze_dwell of the same images; without --gaze it says what to
    pass; `cxrkit explain --gaze` agrees; through a REST stand-in the answers match."""
    model, folder, records, table = gazegnn_export
    _, items = egd_phantom
    paths = [item.path for item in items[:4]]
    result = CliRunner().invoke(cli, ["predict", *paths, "--model", str(folder),
                                      "--gaze", str(table)])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    trained = _record_inputs(records)
    for record, item in zip(got, items, strict=False):
        image, dwell = trained[item.dicom_id]
        assert dwell.max() == pytest.approx(1.0)  # a real map, not an empty one
        want = _softmax(np.asarray(model({"image": image[None], "gaze": dwell[None]})))[0]
        np.testing.assert_allclose([record["probabilities"][k] for k in EGD], want, atol=2e-5)

    missing = CliRunner().invoke(cli, ["predict", paths[0], "--model", str(folder)])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert "takes the radiologist's gaze as a second input; pass --gaze TABLE" in missing.output
    stranger = tmp_path / "not-in-the-table.dcm"
    shutil.copy(paths[0], stranger)
    unknown = CliRunner().invoke(cli, ["predict", str(stranger), "--model", str(folder),
                                       "--gaze", str(table)])
    assert unknown.exit_code == 1
    assert f"{stranger}: no usable gaze rows for DICOM_ID 'not-in-the-table'" in unknown.output

    explained = CliRunner().invoke(cli, ["explain", *paths[:2], "--model",
                                         str(folder.parent.parent.parent / "model.keras"),
                                         "--gaze", str(table), "--out", str(tmp_path / "x")])
    assert explained.exit_code == 0, explained.output
    lines = [json.loads(line) for line in explained.output.splitlines()
             if line.startswith("{")]
    for line, record in zip(lines, got, strict=False):
        assert line["label"] == record["label"]
        assert cv2.imread(line["overlay"]).shape == (*SIZE, 3)

    # TF Serving's REST API: the gaze map goes beside the image, a b64 PNG to
    # predict_image_bytes, a DICOM preprocessed here to serving_default
    png = _encoded(egd_phantom, tmp_path)[0].rename(tmp_path / f"{items[0].dicom_id}.png")
    remote_paths = [str(png), paths[1]]
    signatures = tf.saved_model.load(str(folder)).signatures
    seen = []

    def answer(path, body):  # named inputs per instance
        instance = body["instances"][0]
        seen.append((body["signature_name"], sorted(instance)))
        gaze = tf.constant([instance["gaze"]], tf.float32)
        if body["signature_name"] == "predict_image_bytes":
            out = signatures["predict_image_bytes"](image_bytes=tf.constant(
                [base64.b64decode(instance["image_bytes"]["b64"])]), gaze=gaze)
        else:
            out = signatures["serving_default"](
                image=tf.constant([instance["image"]], tf.float32), gaze=gaze)
        return {"probabilities": out["probabilities"].numpy()[0].tolist(),
                "class_names": [n.decode() for n in out["class_names"].numpy()[0]]}

    with rest_stand_in(answer) as url:
        remote = CliRunner().invoke(cli, ["predict", *remote_paths, "--server", url, "--name",
                                          "g", "--card", str(folder), "--gaze", str(table)])
    assert remote.exit_code == 0, remote.output
    assert seen == [("predict_image_bytes", ["gaze", "image_bytes"]),
                    ("serving_default", ["gaze", "image"])]
    remote = [json.loads(line) for line in remote.output.splitlines()]
    # the DICOM: the same as the local run; the 8-bit PNG: decoded in the graph, within 1e-3
    for k in EGD:
        assert remote[1]["probabilities"][k] == pytest.approx(got[1]["probabilities"][k],
                                                              abs=1e-5)
        assert remote[0]["probabilities"][k] == pytest.approx(got[0]["probabilities"][k],
                                                              abs=1e-3)
    no_card = CliRunner().invoke(cli, ["predict", paths[0], "--server", url, "--name", "g",
                                       "--gaze", str(table)])
    assert no_card.exit_code == 2 and "--gaze with --server needs --card" in no_card.output
