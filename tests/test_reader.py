"""cxrkit.data.load: manifest checks, augmentation that keeps image and mask aligned, balance."""

import numpy as np
import pytest

from cxrkit.errors import InputError
from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.siim_acr.convert import convert_siim_acr

tf = pytest.importorskip("tensorflow")
from cxrkit.data import load  # noqa: E402
from cxrkit.data.reader import augment_batch  # noqa: E402


@pytest.fixture(scope="module")
def siim_records(siim_phantom, tmp_path_factory):
    src, _ = siim_phantom
    out = tmp_path_factory.mktemp("siim-records")
    convert_siim_acr(src, src / "train-rle.csv", out, size=64, subset=None, split="1,0,0")
    return out


def test_augmentation_moves_image_and_mask_together():
    yy, xx = np.mgrid[0:64, 0:64]
    square = ((abs(yy - 20) < 8) & (abs(xx - 40) < 10)).astype(np.float32)[..., None]
    example = {"image": tf.constant(square[None]), "mask": tf.constant(square[None])}
    for seed in range(8):
        out = augment_batch(example, tf.constant([seed, 1], tf.int64), noise_std=0.0,
                      brightness=0.0, contrast=0.0)
        image, mask = out["image"].numpy()[0, ..., 0] > 0.5, out["mask"].numpy()[0, ..., 0]
        assert set(np.unique(mask)) <= {0.0, 1.0}  # nearest keeps a binary mask binary
        iou = (image & (mask > 0)).sum() / (image | (mask > 0)).sum()
        assert iou > 0.85, seed
        assert abs(mask.sum() - square.sum()) <= 0.1 * square.sum()  # rotation <= 10 degrees


def test_augmentation_changes_intensity_only_in_the_image():
    example = {"image": tf.ones((2, 32, 32, 1)) * 3.0, "mask": tf.ones((2, 32, 32, 1))}
    out = augment_batch(example, tf.constant([0, 5], tf.int64), max_degrees=0.0)
    centre = (slice(None), slice(8, 24), slice(8, 24))
    assert not np.allclose(out["image"].numpy()[centre], 3.0)
    np.testing.assert_array_equal(out["mask"].numpy()[centre], 1.0)


def test_augmentation_is_new_each_epoch_and_reproducible_for_a_seed(siim_records):
    def two_epochs(seed):
        dataset = load(siim_records, "train", batch_size=4, augment=True, seed=seed)
        return [next(iter(dataset))["image"].numpy() for _ in range(2)]

    first, again, other = two_epochs(3), two_epochs(3), two_epochs(4)
    for epoch in range(2):  # a new dataset with the same seed repeats every epoch
        np.testing.assert_array_equal(first[epoch], again[epoch])
    assert not np.array_equal(first[0], first[1])  # same images, new draws in epoch 2
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("flip", [False, True])
def test_rotation_and_flip_match_scipy(flip):
    """``transform`` against scipy.ndimage.affine_transform: bilinear for images (order 1),
    nearest neighbour for masks (order 0), on a non-square image so axes cannot swap."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from cxrkit.data.reader import _flip_rotation_matrices, transform

    rng = np.random.default_rng(1)
    height, width = 40, 56
    image = rng.normal(size=(height, width)).astype(np.float32)
    mask = (rng.uniform(size=(height, width)) > 0.6).astype(np.float32)
    angle = np.deg2rad(7.3)
    m = _flip_rotation_matrices(tf.constant([angle], tf.float32), tf.constant([flip]),
                                float(height), float(width)).numpy()[0]
    # transform maps output (x, y) to input (m0 x + m1 y + m2, m3 x + m4 y + m5); scipy
    # maps output (row, col) to input matrix @ (row, col) + offset.
    matrix, offset = np.array([[m[4], m[3]], [m[1], m[0]]]), np.array([m[5], m[2]])
    got = transform(tf.constant(image[None, ..., None]), m[None]).numpy()[0, ..., 0]
    want = ndimage.affine_transform(image.astype(np.float64), matrix, offset, order=1,
                                    mode="constant", cval=0.0)
    rows, cols = np.mgrid[0:height, 0:width]
    source = np.einsum("ij,jhw->ihw", matrix, np.stack([rows, cols])) + offset[:, None, None]
    inside = ((source[0] >= 1) & (source[0] <= height - 2)
              & (source[1] >= 1) & (source[1] <= width - 2))
    assert inside.mean() > 0.7
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-4)
    assert np.abs(got[~inside]).max() <= np.abs(image).max()  # edges fade to the zero fill

    got_mask = transform(tf.constant(mask[None, ..., None]), m[None], "NEAREST").numpy()[0, ..., 0]
    want_mask = ndimage.affine_transform(mask, matrix, offset, order=0, mode="constant")
    assert set(np.unique(got_mask)) <= {0.0, 1.0}
    assert (got_mask[inside] == want_mask[inside]).mean() > 0.995


def test_balanced_batches(egd_phantom, tmp_path):
    src, _ = egd_phantom
    convert_egd_cxr(src / "master_sheet.csv", src / "eye_gaze.csv", src, tmp_path,
                    target=(32, 24), canvas=(160, 120), test=0, val=0)
    for batch in load(tmp_path, "train", batch_size=6, balanced=True, seed=0).take(4):
        counts = np.bincount(batch["label"].numpy(), minlength=3)
        assert (counts >= 2).all(), counts


def test_clear_errors(siim_records, tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        load(tmp_path, "train")
    with pytest.raises(InputError, match="split 'test' holds no images"):
        load(siim_records, "test")
    with pytest.raises(InputError, match="no split 'dev'"):
        load(siim_records, "dev")


def test_in_model_augmentation_layers(tmp_path):
    keras = pytest.importorskip("keras")
    from cxrkit.data import augmentation_layers

    images = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype("float32")
    layers = augmentation_layers(seed=1)
    np.testing.assert_array_equal(layers(images, training=False), images)  # identity at test
    trained = np.asarray(layers(images, training=True))
    assert trained.shape == images.shape and not np.allclose(trained, images)
    model = keras.Sequential([keras.Input((32, 32, 1)), augmentation_layers(seed=1),
                              keras.layers.GlobalAveragePooling2D()])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # safe_mode stays on
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False))


def test_finite_datasets_know_their_length(siim_records):
    """The manifest's counts become the dataset's cardinality (Keras then sizes epochs and
    progress bars instead of warning that the input ran out of data)."""
    import math

    from cxrkit.data import read_manifest

    total = read_manifest(siim_records)["counts"]["train"]["total"]
    assert int(load(siim_records, "train").cardinality()) == total
    assert int(load(siim_records, "train", batch_size=4, shuffle=True, augment=True, seed=1)
               .cardinality()) == math.ceil(total / 4)
    assert len(list(load(siim_records, "train", batch_size=4))) == math.ceil(total / 4)


def _their_crop_box(uniform: np.ndarray, height: int, width: int):
    """torchvision's RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3), transcribed,
    fed the same uniforms: rows 0/1 of ``uniform`` draw each try's area share and log-ratio,
    rows 2/3 place the crop (randint(0, n + 1) as floor(u * (n + 1)))."""
    import math

    area = height * width
    for t in range(10):
        target = area * (0.08 + 0.92 * uniform[0, t])
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * uniform[1, t])
        w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return (int(uniform[2, t] * (height - h + 1)), int(uniform[3, t] * (width - w + 1)),
                    h, w)
    w, h = width, height  # the central crop; both test shapes are within the ratio range
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("shape", [(40, 36), (12, 10)])
def test_gazegnn_crop_box_is_torchvision_rule(shape):
    from cxrkit.data.gazegnn_augmentation import crop_box

    height, width = shape
    for seed in range(60):
        key = tf.constant([seed, 3], tf.int64)
        uniform = tf.random.stateless_uniform([4, 10], key, 0.0, 1.0).numpy().astype(np.float64)
        got = tuple(int(v) for v in crop_box(key, height, width))
        assert got == _their_crop_box(uniform, height, width), seed
        top, left, rows, cols = got
        assert 0 <= top <= height - rows and 0 <= left <= width - cols


@pytest.mark.parametrize("flip", [False, True])
def test_gazegnn_rotation_crop_flip_against_scipy(flip):
    """One composed resampling equals rotating, cropping, resizing (half-pixel centres) and
    mirroring, worked out point by point and sampled with scipy.ndimage.map_coordinates."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from cxrkit.data.gazegnn_augmentation import compose
    from cxrkit.data.reader import transform

    height, width, angle = 30, 24, np.deg2rad(4.0)
    top, left, rows, cols = 5, 3, 17, 14
    image = np.random.default_rng(2).normal(size=(height, width)).astype(np.float32)
    m = compose(tf.constant(angle, tf.float32), (top, left, rows, cols), tf.constant(flip),
                height, width).numpy()
    got = transform(tf.constant(image[None, ..., None]), m[None]).numpy()[0, ..., 0]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (width - 1) - x if flip else x
    xc, yc = left + (x + 0.5) * cols / width - 0.5, top + (y + 0.5) * rows / height - 0.5
    cx, cy = (width - 1) / 2, (height - 1) / 2
    xs = np.cos(angle) * (xc - cx) - np.sin(angle) * (yc - cy) + cx
    ys = np.sin(angle) * (xc - cx) + np.cos(angle) * (yc - cy) + cy
    want = ndimage.map_coordinates(image.astype(np.float64), [ys, xs], order=1,
                                   mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_gazegnn_augmentation_moves_every_map_together(egd_phantom, tmp_path):
    from cxrkit.data.reader import _augment_gazegnn

    yy, xx = np.mgrid[0:48, 0:40]
    square = ((abs(yy - 20) < 9) & (abs(xx - 22) < 7)).astype(np.float32)[..., None]
    example = {k: tf.constant(square) for k in ("image", "heatmap", "gaze_dwell", "mask")}
    for seed in range(6):
        out = _augment_gazegnn(example, tf.constant([seed, 9], tf.int64), height=48, width=40)
        np.testing.assert_array_equal(out["image"].numpy(), out["heatmap"].numpy())
        np.testing.assert_array_equal(out["image"].numpy(), out["gaze_dwell"].numpy())
        assert set(np.unique(out["mask"].numpy())) <= {0.0, 1.0}
    src, _ = egd_phantom
    convert_egd_cxr(src / "master_sheet.csv", src / "fixations.csv", src, tmp_path,
                    gaze_source="fixations", target=(32, 24), canvas=(160, 120), test=0, val=0)
    plain = next(iter(load(tmp_path, "train", batch_size=4)))
    first, again = (next(iter(load(tmp_path, "train", batch_size=4, augment="gazegnn",
                                   seed=1))) for _ in range(2))
    assert "gaze_dwell" in first and first["image"].shape == plain["image"].shape
    np.testing.assert_array_equal(first["image"].numpy(), again["image"].numpy())
    assert not np.array_equal(first["image"].numpy(), plain["image"].numpy())
    with pytest.raises(Exception, match="unknown augmentation 'flip'; choose from none, "
                                        "mlmi2023, gazegnn"):
        load(tmp_path, "train", augment="flip")
