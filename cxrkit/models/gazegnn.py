"""GazeGNN (Wang et al. 2023, arXiv 2305.18221): Pyramid Vision GNN (tiny) with the gaze as input.

The authors' ``models/pvig_gaze.py`` and ``models/gcn_lib`` (GitHub ``ukaukaaaa/GazeGNN``), in
Keras, channels last:

- **stem**: conv3 s2 (C0/2) BN GELU, conv3 s2 (C0) BN GELU, conv3 (C0) BN — to 1/4 resolution;
  plus a learned position embedding (zeros at start) and the **gaze embedding**: the dwell-time
  map (:class:`PatchGaze`: summed over 14 x 14 windows at stride 4 into the 1/4 grid, min-max per
  image) through a one-channel BatchNorm;
- **four stages** of channels 48/96/240/384 with 2/2/6/2 blocks, a stride-2 conv3-BN between
  stages. A block is a Grapher — 1 x 1 conv-BN, :class:`DynamicGraphConv` (dilated k-nearest-
  neighbour graph, k = 9, dilation ``min(index // 4 + 1, 49 // 9)``; key nodes average-pooled by
  4/2/1/1; max-relative graph convolution; relative position bias), 1 x 1 conv-BN, residual — then
  an FFN (1 x 1 conv-BN to 4C, GELU, 1 x 1 conv-BN back, residual);
- **head**: global average pooling, 1 x 1 conv (dense) 1024, BN, GELU, dropout, dense 3.

Input: a grayscale image (repeated to RGB and normalised with the ImageNet mean/std inside, as
their loader) and the gaze dwell map of the same size (``gaze_dwell`` in EGD-CXR records:
:func:`data_prep.egd_cxr.heatmap.dwell_map`), both brought to the square input by their test
transform (:class:`ResizeCrop`). PyTorch's ``padding=1`` convolutions are
zero-padding + valid convolutions here (TensorFlow's "same" pads stride-2 convolutions
asymmetrically). GELU is the exact (erf) form, BatchNorm epsilon 1e-5. Parameter counts equal
theirs at 224 px (``docs/models.md``). At other sizes the relative position tables are built for
the actual grid (their code interpolates the 224-px table; their position embedding only fits
224 px), and a stage with fewer key nodes than ``k * dilation`` uses all of them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from cxrkit.models.layers import GrayscaleToRGB, GroupedPointwiseConv2D

CHANNELS = (48, 96, 240, 384)
BLOCKS = (2, 2, 6, 2)
REDUCTIONS = (4, 2, 1, 1)
NEIGHBOURS = 9
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EPSILON = 1e-5


# --- the relative position bias (pos_embed.py, torch_vertex.Grapher) ---------------------------
def sincos_embedding(channels: int, grid: int) -> np.ndarray:
    """MAE's 2-D sine-cosine embedding, (grid * grid, channels): half the channels encode the
    row, half the column (the column grid first, as ``np.meshgrid(w, h)``)."""
    def one_axis(dim, positions):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one_axis(channels // 2, w), one_axis(channels // 2, h)], axis=1)


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """PyTorch's bicubic convolution weights for the 4 taps around a fractional offset ``t``."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def resize_columns_bicubic(table: np.ndarray, columns: int) -> np.ndarray:
    """``F.interpolate(mode="bicubic", align_corners=False)`` of a 2-D table to ``columns``
    columns (rows unchanged): source x = (x' + 0.5) * in / out - 0.5, taps clamped to the
    edge, no antialiasing."""
    size = table.shape[1]
    source = (np.arange(columns) + 0.5) * (size / columns) - 0.5
    start = np.floor(source).astype(int)
    weights = _cubic(source - start)
    taps = np.clip(start[:, None] + np.arange(-1, 3)[None], 0, size - 1)
    return np.einsum("rct,ct->rc", table[:, taps], weights)


def relative_position_bias(channels: int, grid: int, reduction: int) -> np.ndarray:
    """The Grapher's frozen table, (grid², (grid / reduction)²): minus the interpolated
    ``2 E Eᵀ / channels`` of the sine-cosine embedding E, added to the kNN distances."""
    embedding = sincos_embedding(channels, grid)
    table = 2 * embedding @ embedding.T / embedding.shape[1]
    nodes = grid * grid
    if reduction > 1:
        table = resize_columns_bicubic(table, nodes // (reduction * reduction))
    return (-table).astype(np.float32)


# --- the graph (torch_edge.py, torch_vertex.py) ------------------------------------------------
def knn_indices(x, y, k: int, dilation: int, bias=None):
    """Dilated k nearest neighbours of each node of ``x`` (B, N, C) among ``y`` (B, M, C), both
    L2-normalised over channels, by squared distance plus ``bias`` (N, M): the ``k * dilation``
    nearest (all M when fewer), every ``dilation``-th kept; (B, N, k) int indices into y."""
    x = x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)
    y = y / ops.maximum(ops.norm(y, axis=-1, keepdims=True), 1e-12)
    distance = (ops.sum(x * x, axis=-1)[:, :, None] - 2 * ops.matmul(x, ops.transpose(y, (0, 2, 1)))
                + ops.sum(y * y, axis=-1)[:, None, :])
    if bias is not None:
        distance = distance + bias[None]
    candidates = min(k * dilation, y.shape[1])
    _, indices = ops.top_k(-distance, candidates, sorted=True)
    return ops.stop_gradient(indices[:, :, ::dilation])


def max_relative(x, y, indices):
    """Max-relative aggregation: for each node i, max over its neighbours j of ``y_j - x_i``,
    interleaved with ``x`` channel by channel ([x_0, m_0, x_1, m_1, ...], as their
    ``cat(dim=2).reshape``); (B, N, 2C)."""
    neighbours = ops.take_along_axis(y[:, None, :, :], indices[..., None], axis=2)
    relative = ops.max(neighbours - x[:, :, None, :], axis=2)
    batch, nodes, channels = ops.shape(x)[0], x.shape[1], x.shape[2]
    return ops.reshape(ops.stack([x, relative], axis=-1), (batch, nodes, 2 * channels))


@keras.saving.register_keras_serializable(package="cxrkit")
class DynamicGraphConv(layers.Layer):
    """The Grapher's graph convolution on a (B, H, W, C) map: kNN graph over the pixels (key
    nodes average-pooled by ``reduction``) with the relative position bias, max-relative
    aggregation, then a grouped (4) 1 x 1 conv to 2C, BatchNorm and GELU (their ``BasicConv``).

    The bias table is a frozen weight, ``relative_position`` (their ``relative_pos``)."""

    def __init__(self, k: int = NEIGHBOURS, dilation: int = 1, reduction: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.k, self.dilation, self.reduction = k, dilation, reduction
        self.pool = (layers.AveragePooling2D(reduction, name="key_pool") if reduction > 1
                     else None)
        self.conv = self.norm = None

    def build(self, input_shape):
        _, rows, cols, channels = input_shape
        if rows != cols:
            raise ValueError(f"GazeGNN needs square maps, got {rows} x {cols}")
        self.grid = (rows, cols, channels)  # static, whatever shape a graph call sees
        self.conv = GroupedPointwiseConv2D(2 * channels, 1, groups=4, name="conv")
        self.conv.build((None, rows, cols, 2 * channels))
        self.norm = layers.BatchNormalization(epsilon=EPSILON, momentum=0.9, name="norm")
        self.norm.build((None, rows, cols, 2 * channels))
        self.relative_position = self.add_weight(
            name="relative_position", shape=(rows * cols, (rows // self.reduction) ** 2),
            initializer=keras.initializers.Constant(
                relative_position_bias(channels, rows, self.reduction)),
            trainable=False)

    def call(self, inputs, training=None):
        batch = ops.shape(inputs)[0]
        rows, cols, channels = self.grid
        keys = self.pool(inputs) if self.pool is not None else inputs
        x = ops.reshape(inputs, (batch, rows * cols, channels))
        y = ops.reshape(keys, (batch, (rows // self.reduction) * (cols // self.reduction),
                               channels))
        indices = knn_indices(x, y, self.k, self.dilation, self.relative_position)
        merged = ops.reshape(max_relative(x, y, indices), (batch, rows, cols, 2 * channels))
        out = self.norm(self.conv(merged), training=training)
        return ops.gelu(out, approximate=False)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "k": self.k, "dilation": self.dilation,
                "reduction": self.reduction}


# --- the gaze input (read_data.py getPatchGaze) ------------------------------------------------
@keras.saving.register_keras_serializable(package="cxrkit")
class PatchGaze(layers.Layer):
    """Dwell map (B, S, S, 1) to the patch grid (B, S/4, S/4, 1): cell (i, j) sums rows
    [4i - 7, 4i + 7) and columns [4j - 7, 4j + 7), clipped to [0, S - 1) (their loops clip the
    end at 223 for S = 224, so the last row and column never count), then min-max per image
    (left as is when constant)."""

    def build(self, input_shape):
        self.size = input_shape[1]  # static, whatever shape a graph call sees

    def call(self, dwell):
        size = self.size
        grid = size // 4
        inner = dwell[:, : size - 1, : size - 1, :1]
        after = 4 * (grid - 1) + 14 - (size - 1) - 7
        padded = ops.pad(inner, [[0, 0], [7, after], [7, after], [0, 0]])
        sums = ops.conv(padded, ops.ones((14, 14, 1, 1), dtype=padded.dtype), strides=4)
        low = ops.min(sums, axis=(1, 2, 3), keepdims=True)
        high = ops.max(sums, axis=(1, 2, 3), keepdims=True)
        spread = high - low
        return ops.where(spread > 0, (sums - low) / ops.where(spread > 0, spread, 1.0), sums)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] // 4, input_shape[2] // 4, 1)


@keras.saving.register_keras_serializable(package="cxrkit")
class ResizeCrop(layers.Layer):
    """Their test transform, ``Resize(round(S * 8 / 7))`` then ``CenterCrop(S)``: the shorter
    side scaled to 8/7 of ``size`` (bilinear, antialiased as PIL's), the centre ``size`` x
    ``size`` square kept (top / left offsets ``round((side - size) / 2)``)."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def _resized(self, rows: int, cols: int) -> tuple[int, int]:
        short = round(self.size * 8 / 7)
        if rows <= cols:
            return short, int(short * cols / rows)
        return int(short * rows / cols), short

    def build(self, input_shape):
        self.source = (input_shape[1], input_shape[2])  # static, whatever a graph call sees

    def call(self, images):
        rows, cols = self._resized(*self.source)
        resized = ops.image.resize(images, (rows, cols), interpolation="bilinear",
                                   antialias=True)
        top, left = round((rows - self.size) / 2), round((cols - self.size) / 2)
        return resized[:, top: top + self.size, left: left + self.size, :]

    def uncrop(self, maps):
        """(B, size, size) maps on the crop back to (B, rows, cols) of the input frame: put in
        the crop's window of the resized frame (zero outside), resized bilinearly."""
        rows, cols = self._resized(*self.source)
        top, left = round((rows - self.size) / 2), round((cols - self.size) / 2)
        padded = ops.pad(maps, [[0, 0], [top, rows - self.size - top],
                                [left, cols - self.size - left]])
        return ops.image.resize(padded[..., None], self.source, interpolation="bilinear")[..., 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="cxrkit")
class PositionEmbedding(layers.Layer):
    """Adds a learned (H, W, C) embedding, zeros at start (their ``pos_embed``)."""

    def build(self, input_shape):
        self.embedding = self.add_weight(name="embedding", shape=tuple(input_shape[1:]),
                                         initializer="zeros")

    def call(self, inputs):
        return inputs + self.embedding[None]


@keras.saving.register_keras_serializable(package="cxrkit")
class ImageNetNormalize(layers.Layer):
    """(x - mean) / std per RGB channel with the ImageNet statistics (their loader's)."""

    def call(self, images):
        mean = ops.convert_to_tensor(IMAGENET_MEAN, dtype=images.dtype)
        std = ops.convert_to_tensor(IMAGENET_STD, dtype=images.dtype)
        return (images - mean) / std


# --- the network --------------------------------------------------------------------------------
def _conv_bn(x, filters: int, stride: int, name: str, kernel: int = 3):
    if kernel == 3:
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, name=f"{name}_conv")(x)
    return layers.BatchNormalization(epsilon=EPSILON, momentum=0.9, name=f"{name}_bn")(x)


def _gelu(x, name: str):
    return layers.Activation("gelu", name=name)(x)  # Keras' gelu is the exact (erf) form


def _block(x, channels: int, index: int, reduction: int, name: str):
    """Grapher then FFN, each with its residual."""
    dilation = min(index // 4 + 1, 49 // NEIGHBOURS)
    shortcut = x
    y = _conv_bn(x, channels, 1, f"{name}_grapher_fc1", kernel=1)
    y = DynamicGraphConv(NEIGHBOURS, dilation, reduction, name=f"{name}_grapher_graph")(y)
    y = _conv_bn(y, channels, 1, f"{name}_grapher_fc2", kernel=1)
    x = layers.Add(name=f"{name}_grapher_out")([y, shortcut])
    shortcut = x
    y = _gelu(_conv_bn(x, 4 * channels, 1, f"{name}_ffn_fc1", kernel=1), f"{name}_ffn_gelu")
    y = _conv_bn(y, channels, 1, f"{name}_ffn_fc2", kernel=1)
    return layers.Add(name=f"{name}_out")([y, shortcut])


def build_gazegnn(input_shape=(224, 224, 1), num_classes: int = 3, *, image_size: int = 224,
                  channels=CHANNELS, blocks=BLOCKS, dropout: float = 0.0,
                  name: str = "gazegnn") -> keras.Model:
    """GazeGNN: ``{"image": input_shape in [0, 1], "gaze": the dwell map of the same rows and
    columns, one channel, in [0, 1]}`` to ``num_classes`` logits. Both inputs go through
    :class:`ResizeCrop` to ``image_size`` (their test transform; 224) first. ``channels`` /
    ``blocks`` other than Pyramid-ViG-Ti's make demo widths; the Grad-CAM target is the last
    block's output (:func:`cam_layer`)."""
    if image_size % 32:
        raise ValueError(f"GazeGNN needs an image side divisible by 32, got {image_size}")
    rows, cols = input_shape[:2]
    image = keras.Input((rows, cols, 1), name="image")
    gaze = keras.Input((rows, cols, 1), name="gaze")
    square = ResizeCrop(image_size, name="resize_crop")
    x = ImageNetNormalize(name="imagenet_normalize")(GrayscaleToRGB(name="to_rgb")(
        square(image)))
    x = _gelu(_conv_bn(x, channels[0] // 2, 2, "stem_1"), "stem_1_gelu")
    x = _gelu(_conv_bn(x, channels[0], 2, "stem_2"), "stem_2_gelu")
    x = _conv_bn(x, channels[0], 1, "stem_3")
    x = PositionEmbedding(name="pos_embed")(x)
    gaze_grid = PatchGaze(name="patch_gaze")(square(gaze))
    gaze_grid = layers.BatchNormalization(epsilon=EPSILON, momentum=0.9, name="gaze_bn")(
        gaze_grid)
    x = layers.Add(name="gaze_embed")([x, gaze_grid])  # broadcast over the channels
    index = 0
    for stage, (width, depth, reduction) in enumerate(zip(channels, blocks, REDUCTIONS,
                                                          strict=True)):
        if stage:
            x = _conv_bn(x, width, 2, f"down_{stage}")
        for _ in range(depth):
            x = _block(x, width, index, reduction, f"block_{index}")
            index += 1
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(1024, name="head_fc1")(x)
    x = layers.BatchNormalization(epsilon=EPSILON, momentum=0.9, name="head_bn")(x)
    x = _gelu(x, "head_gelu")
    x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model({"image": image, "gaze": gaze}, logits, name=name)


def is_gazegnn(model: keras.Model) -> bool:
    """Whether ``model`` is a :func:`build_gazegnn` network (built here or loaded)."""
    return any(isinstance(layer, PatchGaze) for layer in model.layers)


def cam_layer(model: keras.Model) -> str:
    """The Grad-CAM target: the last Grapher/FFN block's output."""
    return [layer.name for layer in model.layers if layer.name.endswith("_out")
            and layer.name.startswith("block_")][-1]


def pytorch_counts(model: keras.Model) -> dict:
    """Parameter counts as the authors' PyTorch model reports them: ``total`` (every weight
    but BatchNorm's running statistics), ``trainable``, ``frozen`` (the relative position
    tables) and ``batchnorm_statistics`` (Keras counts those as weights too)."""
    def size(weights):
        return sum(int(np.prod(w.shape)) for w in weights)

    stats = [w for w in model.weights if w.path.endswith(("moving_mean", "moving_variance"))]
    trainable = size(model.trainable_weights)
    total = size(model.weights) - size(stats)
    return {"total": total, "trainable": trainable, "frozen": total - trainable,
            "batchnorm_statistics": size(stats), "keras_count_params": int(model.count_params())}


# --- the authors' PyTorch weights ---------------------------------------------------------------
def _conv(weight: np.ndarray) -> np.ndarray:
    """A PyTorch (out, in / groups, kh, kw) kernel as Keras' (kh, kw, in / groups, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def torch_layout(model: keras.Model) -> dict[str, str]:
    """PyTorch state-dict prefix (their ``DeepGCN`` module names) -> Keras layer name, for
    every weighted layer of the backbone and the head's hidden layer. The backbone is one
    Sequential: the blocks in order, with a Downsample before each stage but the first."""
    layout = {"stem.convs.0": "stem_1_conv", "stem.convs.1": "stem_1_bn",
              "stem.convs.3": "stem_2_conv", "stem.convs.4": "stem_2_bn",
              "stem.convs.6": "stem_3_conv", "stem.convs.7": "stem_3_bn",
              "prediction.0": "head_fc1", "prediction.1": "head_bn"}
    position = 0
    for layer in model.layers:
        name = layer.name
        if name.startswith("down_") and name.endswith("_conv"):
            down = name[: -len("_conv")]
            layout[f"backbone.{position}.conv.0"] = f"{down}_conv"
            layout[f"backbone.{position}.conv.1"] = f"{down}_bn"
            position += 1
        elif name.startswith("block_") and name.endswith("_grapher_fc1_conv"):
            block = name[: -len("_grapher_fc1_conv")]
            grapher, ffn = f"backbone.{position}.0", f"backbone.{position}.1"
            layout.update({
                f"{grapher}.fc1.0": f"{block}_grapher_fc1_conv",
                f"{grapher}.fc1.1": f"{block}_grapher_fc1_bn",
                f"{grapher}.graph_conv.gconv.nn.0": f"{block}_grapher_graph/conv",
                f"{grapher}.graph_conv.gconv.nn.1": f"{block}_grapher_graph/norm",
                f"{grapher}.relative_pos": f"{block}_grapher_graph/relative_position",
                f"{grapher}.fc2.0": f"{block}_grapher_fc2_conv",
                f"{grapher}.fc2.1": f"{block}_grapher_fc2_bn",
                f"{ffn}.fc1.0": f"{block}_ffn_fc1_conv", f"{ffn}.fc1.1": f"{block}_ffn_fc1_bn",
                f"{ffn}.fc2.0": f"{block}_ffn_fc2_conv", f"{ffn}.fc2.1": f"{block}_ffn_fc2_bn"})
            position += 1
    return layout


def _layer(model: keras.Model, name: str):
    if "/" in name:
        outer, inner = name.split("/")
        graph = model.get_layer(outer)
        return graph.relative_position if inner == "relative_position" else getattr(graph,
                                                                                     inner)
    return model.get_layer(name)


def load_torch_state(model: keras.Model, state: dict[str, np.ndarray]) -> dict:
    """Copies the authors' Pyramid-ViG state dict into ``model`` (built at 224 px with their
    widths). Their ImageNet classifier (``prediction.4``) and the gaze BatchNorm (``b1``, added
    after loading in their code) are not in it: the 3-class head and ``gaze_bn`` keep their
    fresh initialisation, as in their code. Returns what was copied and what was left.

    Raises:
        ValueError: a backbone tensor is missing or has the wrong shape.
    """
    layout = torch_layout(model)
    used, problems = set(), []

    def take(key: str, shape) -> np.ndarray | None:
        if key not in state:
            problems.append(f"{key}: missing")
            return None
        value = state[key]
        if tuple(value.shape) != tuple(shape):
            problems.append(f"{key}: shape {tuple(value.shape)}, expected {tuple(shape)}")
            return None
        used.add(key)
        return value

    embedding = model.get_layer("pos_embed").embedding  # (H, W, C); theirs (1, C, H, W)
    position = take("pos_embed", (1, embedding.shape[2], *embedding.shape[:2]))
    values: list[tuple[object, np.ndarray]] = []
    if position is not None:
        values.append((embedding, np.transpose(position[0], (1, 2, 0))))
    for prefix, name in layout.items():
        target = _layer(model, name)
        if name.endswith("relative_position"):
            table = take(prefix, (1, *target.shape))
            if table is not None:
                values.append((target, table[0]))
        elif isinstance(target, layers.BatchNormalization):
            for suffix, weight in (("weight", target.gamma), ("bias", target.beta),
                                   ("running_mean", target.moving_mean),
                                   ("running_var", target.moving_variance)):
                value = take(f"{prefix}.{suffix}", weight.shape)
                if value is not None:
                    values.append((weight, value))
            used.add(f"{prefix}.num_batches_tracked")
        else:  # a conv or the head's dense layer (their 1 x 1 conv)
            kernel, bias = target.kernel, target.bias
            if isinstance(target, layers.Dense):
                shape = (kernel.shape[1], kernel.shape[0], 1, 1)
            else:
                shape = (kernel.shape[3], kernel.shape[2], kernel.shape[0], kernel.shape[1])
            weight = take(f"{prefix}.weight", shape)
            if weight is not None:
                values.append((kernel, weight[:, :, 0, 0].T if isinstance(target, layers.Dense)
                               else _conv(weight)))
            value = take(f"{prefix}.bias", bias.shape)
            if value is not None:
                values.append((bias, value))
    if problems:
        raise ValueError("the checkpoint does not fit Pyramid-ViG-Ti: " + "; ".join(problems[:8])
                         + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""))
    for variable, value in values:
        variable.assign(value.astype("float32"))
    return {"copied": len(used), "left": sorted(set(state) - used)}
