"""GazeGNN's pieces against numpy transcriptions of the authors' code, and its parameter count
against the authors' model (counted with PyTorch: ``../shared`` issue text)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.special import erf

from cxrkit.models.gazegnn import (
    DynamicGraphConv,
    PatchGaze,
    ResizeCrop,
    _cubic,
    build_gazegnn,
    cam_layer,
    knn_indices,
    max_relative,
    pytorch_counts,
    relative_position_bias,
    resize_columns_bicubic,
    sincos_embedding,
)
from cxrkit.models.layers import GroupedPointwiseConv2D


def _pytorch_count(weights) -> int:
    """Parameters as PyTorch counts them: every weight but BatchNorm's running statistics."""
    return sum(int(np.prod(w.shape)) for w in weights
               if not w.path.endswith(("moving_mean", "moving_variance")))


@pytest.fixture(scope="module")
def full_gazegnn():
    """Pyramid-ViG-Ti at 224 px with the 3-class head, built once for this file."""
    return build_gazegnn((224, 224, 1), 3)


def test_parameter_counts_match_the_authors_model(full_gazegnn):
    """Pyramid-ViG-Ti with a 3-class head and the gaze BatchNorm: 11,464,391 parameters,
    9,692,453 trainable (the relative position tables are frozen), 48,658 BatchNorm
    statistics; by part stem 32,112, blocks 10,882,386, head 399,363, position embedding
    150,528, gaze BN 2."""
    model = full_gazegnn
    assert pytorch_counts(model) == {"total": 11_464_391, "trainable": 9_692_453,
                                     "frozen": 1_771_938, "batchnorm_statistics": 48_658,
                                     "keras_count_params": 11_464_391 + 48_658}
    parts = {"stem": 0, "blocks": 0, "head": 0, "pos": 0, "gaze": 0}
    for layer in model.layers:
        part = ("stem" if layer.name.startswith("stem_") else
                "blocks" if layer.name.startswith(("block_", "down_")) else
                "head" if layer.name.startswith(("head_", "logits")) else
                "pos" if layer.name == "pos_embed" else
                "gaze" if layer.name == "gaze_bn" else None)
        if part:
            parts[part] += _pytorch_count(layer.weights)
    assert parts == {"stem": 32_112, "blocks": 10_882_386, "head": 399_363, "pos": 150_528,
                     "gaze": 2}


def _numpy_knn(x, y, k, dilation, bias):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    distance = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1) + bias[None]
    return np.argsort(distance, axis=-1, kind="stable")[..., : k * dilation : dilation]


def test_knn_graph_and_max_relative_against_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 7, 4)), rng.normal(size=(2, 5, 4))
    bias = rng.normal(scale=0.1, size=(7, 5))
    for k, dilation in ((2, 1), (2, 2), (9, 1)):  # (9, 1): more than the 5 key nodes
        got = np.asarray(knn_indices(x.astype("float32"), y.astype("float32"), k, dilation,
                                     bias.astype("float32")))
        want = _numpy_knn(x, y, k, dilation, bias)
        np.testing.assert_array_equal(got, want)
    indices = _numpy_knn(x, y, 2, 1, bias)
    merged = np.asarray(max_relative(x.astype("float32"), y.astype("float32"), indices))
    relative = np.stack([[(y[b, indices[b, i]] - x[b, i]).max(axis=0) for i in range(7)]
                         for b in range(2)])
    np.testing.assert_allclose(merged[..., 0::2], x, rtol=1e-6)  # interleaved: x, m, x, m...
    np.testing.assert_allclose(merged[..., 1::2], relative, rtol=1e-5, atol=1e-6)


def test_dynamic_graph_conv_layer_against_numpy():
    """The whole layer on a 4 x 4 map with key nodes pooled by 2: average pooling, kNN with
    the relative position bias, max-relative, grouped 1 x 1 conv, BatchNorm (inference),
    exact GELU."""
    rng = np.random.default_rng(1)
    channels = 8
    inputs = rng.normal(size=(2, 4, 4, channels)).astype("float32")
    layer = DynamicGraphConv(k=3, dilation=1, reduction=2)
    got = np.asarray(layer(inputs, training=False))
    kernel, bias = (np.asarray(w) for w in layer.conv.weights)
    gamma, beta, mean, var = (np.asarray(w) for w in layer.norm.weights)
    table = np.asarray(layer.relative_position)
    np.testing.assert_allclose(table, relative_position_bias(channels, 4, 2))
    x = inputs.reshape(2, 16, channels)
    y = inputs.reshape(2, 2, 2, 2, 2, channels).mean(axis=(2, 4)).reshape(2, 4, channels)
    indices = _numpy_knn(x, y, 3, 1, table)
    relative = np.stack([[(y[b, indices[b, i]] - x[b, i]).max(axis=0) for i in range(16)]
                         for b in range(2)])
    merged = np.stack([x, relative], axis=-1).reshape(2, 16, 2 * channels)
    groups = [merged[..., g * 4:(g + 1) * 4] @ kernel[0, 0, :, g * 4:(g + 1) * 4]
              for g in range(4)]
    conv = np.concatenate(groups, axis=-1) + bias
    normed = (conv - mean) / np.sqrt(var + 1e-5) * gamma + beta
    want = 0.5 * normed * (1 + erf(normed / np.sqrt(2)))
    np.testing.assert_allclose(got.reshape(2, 16, -1), want, rtol=1e-4, atol=1e-5)


def test_grouped_pointwise_conv_is_keras_grouped_conv(tmp_path):
    """The graph convolution's grouped 1 x 1 conv, as an einsum, against Keras' grouped
    Conv2D (which TensorFlow computes with XLA on a CPU): outputs, gradients, weights and a
    saved model."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(3, 5, 5, 16)).astype("float32"))
    ours, keras_own = GroupedPointwiseConv2D(8, 1, groups=4), keras.layers.Conv2D(8, 1, groups=4)
    ours.build(x.shape)
    keras_own.build(x.shape)
    assert [w.shape for w in ours.weights] == [w.shape for w in keras_own.weights]
    for mine, theirs in zip(ours.weights, keras_own.weights, strict=True):
        theirs.assign(rng.normal(size=theirs.shape).astype("float32"))
        mine.assign(theirs)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got, want = ours(x), keras_own(x)
        got_loss, want_loss = tf.reduce_sum(got ** 3), tf.reduce_sum(want ** 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for mine, theirs in [(x, x), (ours.kernel, keras_own.kernel), (ours.bias, keras_own.bias)]:
        np.testing.assert_allclose(tape.gradient(got_loss, mine), tape.gradient(want_loss, theirs),
                                   rtol=1e-4, atol=1e-4)
    inputs = keras.Input((5, 5, 16))
    model = keras.Model(inputs, GroupedPointwiseConv2D(8, 1, groups=4, name="conv")(inputs))
    model.get_layer("conv").set_weights(ours.get_weights())
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "m.keras")(x), want,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="1 x 1"):
        GroupedPointwiseConv2D(8, 3, groups=4)


def _their_patch_gaze(gaze: np.ndarray) -> np.ndarray:
    """read_data.py ``getPatchGaze``, transcribed (224 -> 56; the clip at S - 1)."""
    size = gaze.shape[0]
    grid = size // 4
    g = np.zeros((grid, grid), np.float32)
    for i in range(grid):
        for j in range(grid):
            x1, x2, y1, y2 = 4 * i - 7, 4 * i + 7, 4 * j - 7, 4 * j + 7
            x1, y1 = max(x1, 0), max(y1, 0)
            x2, y2 = min(x2, size - 1), min(y2, size - 1)
            g[i, j] = gaze[x1:x2, y1:y2].sum()
    if g.max() - g.min() != 0:
        g = (g - g.min()) / (g.max() - g.min())
    return g


@pytest.mark.parametrize("size", [224, 64])
def test_patch_gaze_matches_their_rule(size):
    rng = np.random.default_rng(2)
    dwell = np.zeros((2, size, size), np.float32)
    for b in range(2):
        rows, cols = rng.integers(0, size, 30), rng.integers(0, size, 30)
        dwell[b, rows, cols] = rng.uniform(0.1, 1.0, 30)
    dwell[1, -1, :] = 5.0  # the last row never counts
    got = np.asarray(PatchGaze()(dwell[..., None]))[..., 0]
    for b in range(2):
        np.testing.assert_allclose(got[b], _their_patch_gaze(dwell[b]), rtol=1e-5, atol=1e-6)
    flat = np.asarray(PatchGaze()(np.zeros((1, size, size, 1), np.float32)))
    assert not flat.any()  # a constant map is left as it is


def test_resize_crop_is_their_test_transform():
    """Resize(256) + CenterCrop(224) on a 640 x 512 image: 320 x 256, rows 48..272 kept; a
    vertical ramp shows the offset."""
    ramp = np.repeat(np.arange(640, dtype="float32")[:, None], 512, axis=1)[None, ..., None]
    out = np.asarray(ResizeCrop(224)(ramp))[0, :, :, 0]
    assert out.shape == (224, 224)
    # row r of the 320-row resize averages source rows 2r, 2r + 1: value 2r + 0.5
    np.testing.assert_allclose(out[:, 100], 2 * (np.arange(224) + 48) + 0.5, atol=1e-3)


def test_relative_position_table():
    """The sine-cosine embedding by its formula, PyTorch's bicubic taps (A = -0.75), and a
    linear ramp kept exactly away from the edges."""
    embedding = sincos_embedding(8, 3)
    w, h = 2, 1  # node 5 = row 1, column 2
    omega = 1 / 10000 ** (np.arange(2) / 2)
    np.testing.assert_allclose(embedding[5], np.concatenate(
        [np.sin(w * omega), np.cos(w * omega), np.sin(h * omega), np.cos(h * omega)]))
    np.testing.assert_allclose(_cubic(np.array(0.0)), [0, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(_cubic(np.array(0.5)), [-0.09375, 0.59375, 0.59375, -0.09375])
    ramp = np.tile(np.arange(16, dtype=float), (2, 1))
    halved = resize_columns_bicubic(ramp, 4)  # source x = 4 x' + 1.5
    np.testing.assert_allclose(halved[:, 1:3], [[5.5, 9.5]] * 2)
    table = relative_position_bias(8, 3, 1)
    np.testing.assert_allclose(table, -2 * embedding @ embedding.T / 8, rtol=1e-6)


@pytest.fixture(scope="module")
def trained_small():
    """A demo-width GazeGNN on an 80 x 64 input (64-px crop) and four examples."""
    keras.utils.set_random_seed(0)
    model = build_gazegnn((80, 64, 1), 3, image_size=64, channels=(8, 16, 24, 32),
                          blocks=(1, 1, 2, 1))
    rng = np.random.default_rng(0)
    inputs = {"image": rng.random((4, 80, 64, 1), dtype="float32"),
              "gaze": rng.random((4, 80, 64, 1), dtype="float32")}
    return model, inputs


def test_forward_train_step_and_target_layer(trained_small):
    model, inputs = trained_small
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # a few steps of a small model: cheaper than tracing
    losses = [model.train_on_batch(inputs, np.array([0, 1, 2, 0])) for _ in range(3)]
    assert losses[-1] < 0.7 * losses[0], losses  # it starts to fit four examples
    # tf.data hands a traced step images of unknown rows and columns: the layers use the
    # shapes they were built with
    import tensorflow as tf

    spec = tf.TensorSpec((None, None, None, 1), tf.float32)
    traced = tf.function(lambda image, gaze: model({"image": image, "gaze": gaze}),
                         input_signature=[spec, spec], autograph=False)
    np.testing.assert_allclose(traced(inputs["image"], inputs["gaze"]).numpy(),
                               model(inputs).numpy(), rtol=1e-4, atol=1e-5)
    assert cam_layer(model) == "block_4_out"
    assert model.get_layer("block_4_out").output.shape == (None, 2, 2, 32)
    again = keras.Model.from_config(model.get_config())
    assert again.count_params() == model.count_params()


def _their_state_dict(rng) -> dict[str, np.ndarray]:
    """Random tensors under the names and shapes of the authors' ``pvig_ti_224_gelu``
    (DeepGCN: stem, pos_embed, backbone Sequential with Downsamples, prediction), written out
    here from their module structure, independently of cxrkit's mapping."""
    state = {}

    def conv(name, cin, cout, k, groups=1):
        state[f"{name}.weight"] = rng.normal(size=(cout, cin // groups, k, k))
        state[f"{name}.bias"] = rng.normal(size=cout)

    def bn(name, c):
        state[f"{name}.weight"] = rng.normal(size=c)
        state[f"{name}.bias"] = rng.normal(size=c)
        state[f"{name}.running_mean"] = rng.normal(size=c)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2, size=c)
        state[f"{name}.num_batches_tracked"] = np.array(7)

    conv("stem.convs.0", 3, 24, 3), bn("stem.convs.1", 24)
    conv("stem.convs.3", 24, 48, 3), bn("stem.convs.4", 48)
    conv("stem.convs.6", 48, 48, 3), bn("stem.convs.7", 48)
    state["pos_embed"] = rng.normal(size=(1, 48, 56, 56))
    position, nodes = 0, 56 * 56
    for stage, (c, depth, r) in enumerate(zip((48, 96, 240, 384), (2, 2, 6, 2), (4, 2, 1, 1),
                                              strict=True)):
        if stage:
            conv(f"backbone.{position}.conv.0", (48, 96, 240)[stage - 1], c, 3)
            bn(f"backbone.{position}.conv.1", c)
            position, nodes = position + 1, nodes // 4
        for _ in range(depth):
            g, f = f"backbone.{position}.0", f"backbone.{position}.1"
            conv(f"{g}.fc1.0", c, c, 1), bn(f"{g}.fc1.1", c)
            conv(f"{g}.graph_conv.gconv.nn.0", 2 * c, 2 * c, 1, groups=4)
            bn(f"{g}.graph_conv.gconv.nn.1", 2 * c)
            state[f"{g}.relative_pos"] = rng.normal(size=(1, nodes, nodes // (r * r)))
            conv(f"{g}.fc2.0", 2 * c, c, 1), bn(f"{g}.fc2.1", c)
            conv(f"{f}.fc1.0", c, 4 * c, 1), bn(f"{f}.fc1.1", 4 * c)
            conv(f"{f}.fc2.0", 4 * c, c, 1), bn(f"{f}.fc2.1", c)
            position += 1
    conv("prediction.0", 384, 1024, 1), bn("prediction.1", 1024)
    conv("prediction.4", 1024, 1000, 1)
    return {k: v.astype(np.float32) if k.endswith(("weight", "bias", "running_mean",
                                                    "running_var", "pos_embed", "relative_pos"))
            else v for k, v in state.items()}


def write_torch_checkpoint(path, state: dict[str, np.ndarray]) -> None:
    """A ``torch.save``-format zip of ``state`` written without PyTorch: the pickle names
    ``torch._utils._rebuild_tensor_v2`` and ``torch.<Type>Storage`` (stand-in modules exist
    only while pickling) and refers to the raw storages by persistent id."""
    import collections
    import pickle
    import sys
    import types
    import zipfile

    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    storage_types = {}
    for name in ("FloatStorage", "LongStorage"):
        storage_types[name] = type(name, (), {"__module__": "torch"})
        setattr(torch, name, storage_types[name])

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called when writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    storages = {}

    class Storage:
        def __init__(self, array):
            self.key, self.array = str(len(storages)), array
            storages[self.key] = array.tobytes()

    class Tensor:
        def __init__(self, array):
            self.array = np.ascontiguousarray(array)

        def __reduce__(self):
            a = self.array
            stride = tuple(s // a.itemsize for s in a.strides)
            return _rebuild_tensor_v2, (Storage(a), 0, a.shape, stride, False,
                                        collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind = "LongStorage" if obj.array.dtype == np.int64 else "FloatStorage"
                return ("storage", storage_types[kind], obj.key, "cpu", obj.array.size)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        import io

        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(collections.OrderedDict(
            (k, Tensor(v.astype(np.int64) if v.dtype.kind == "i" else v))
            for k, v in state.items()))
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/version", "3\n")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)


def test_convert_weights_from_their_checkpoint(tmp_path, full_gazegnn):
    """``cxrkit models convert-weights pvig_ti FILE`` on a checkpoint with the authors' names
    and shapes: every backbone tensor lands where it belongs (conv kernels transposed, the
    head's 1 x 1 conv as a dense kernel, the relative position tables, the position
    embedding channels last), their ImageNet classifier is left out."""
    from click.testing import CliRunner

    from cxrkit.cli import cli
    from cxrkit.models.torch_checkpoint import read_state_dict

    state = _their_state_dict(np.random.default_rng(3))
    checkpoint = tmp_path / "pvig_ti_78.5.pth.tar"
    write_torch_checkpoint(checkpoint, state)
    read = read_state_dict(checkpoint)
    assert set(read) == set(state)
    np.testing.assert_array_equal(read["backbone.3.0.relative_pos"],
                                  state["backbone.3.0.relative_pos"])
    result = CliRunner().invoke(cli, ["models", "convert-weights", "pvig_ti", str(checkpoint),
                                      "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "not used: prediction.4.bias, prediction.4.weight" in result.output
    model = full_gazegnn
    model.load_weights(tmp_path / "w" / "gazegnn.weights.h5")
    np.testing.assert_allclose(np.asarray(model.get_layer("stem_1_conv").kernel),
                               state["stem.convs.0.weight"].transpose(2, 3, 1, 0))
    graph = model.get_layer("block_11_grapher_graph")  # backbone.14: the last block
    np.testing.assert_allclose(np.asarray(graph.conv.kernel)[0, 0],
                               state["backbone.14.0.graph_conv.gconv.nn.0.weight"][:, :, 0, 0].T)
    np.testing.assert_allclose(np.asarray(graph.relative_position),
                               state["backbone.14.0.relative_pos"][0])
    np.testing.assert_allclose(np.asarray(model.get_layer("down_3_bn").moving_variance),
                               state["backbone.12.conv.1.running_var"])
    np.testing.assert_allclose(np.asarray(model.get_layer("block_4_ffn_fc1_bn").gamma),
                               state["backbone.6.1.fc1.1.weight"])
    np.testing.assert_allclose(np.asarray(model.get_layer("pos_embed").embedding),
                               state["pos_embed"][0].transpose(1, 2, 0))
    np.testing.assert_allclose(np.asarray(model.get_layer("head_fc1").kernel),
                               state["prediction.0.weight"][:, :, 0, 0].T)
    broken = dict(state)
    broken["backbone.6.0.fc1.0.weight"] = broken["backbone.6.0.fc1.0.weight"][:10]
    write_torch_checkpoint(tmp_path / "broken.pth", broken)
    result = CliRunner().invoke(cli, ["models", "convert-weights", "pvig_ti",
                                      str(tmp_path / "broken.pth"), "--out", str(tmp_path / "b")])
    assert result.exit_code != 0
    assert "backbone.6.0.fc1.0.weight: shape (10, 240, 1, 1), expected (240, 240, 1, 1)" in \
        result.output


def test_grad_cam_on_the_last_block_in_the_input_frame(trained_small):
    """Grad-CAM of the predicted class on the last block (their paper's figure), computed here
    with an eager GradientTape, min-max on the 2 x 2 grid of the 64-px crop, resized to the
    crop, put back in the crop's window of the resized 91 x 73 frame (rows 14..78, columns
    4..68, by hand) and resized to the 80 x 64 input."""
    import tensorflow as tf

    from cxrkit.explain import grad_cam

    model, inputs = trained_small
    got = grad_cam(model, inputs, layer=cam_layer(model))
    tap = keras.Model(model.input, [model.get_layer(cam_layer(model)).output, model.output])
    with tf.GradientTape() as tape:
        acts, logits = tap(inputs, training=False)
        score = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
    grads = tape.gradient(score, acts).numpy()
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts.numpy()).sum(-1), 0)
    want = []
    for m in cam:
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
        crop = tf.image.resize(m[..., None], (64, 64)).numpy()[..., 0]
        frame = np.zeros((91, 73), np.float32)
        frame[14:78, 4:68] = crop
        want.append(tf.image.resize(frame[..., None], (80, 64)).numpy()[..., 0])
    assert got.shape == (4, 80, 64)
    np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=1e-5)
    assert got.max() > 0.5  # the maps are not degenerate, so the comparison means something
    assert not got[:, 0].any() and not got[:, -1].any()  # outside the crop: no evidence
