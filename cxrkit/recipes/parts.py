"""Recipe parts: ``[parts.<name>]`` tables to Keras models, and their saved files.

Builders (``builder = ...``) and the options each takes (a part leaves out what it does not
change; the defaults are the model functions' own, in :mod:`cxrkit.models`):

- ``densenet_encoder``: ``weights`` ("none", "imagenet" or a local path); ``blocks`` (dense
  layers per block, for a smaller random DenseNet than DenseNet201's 6/12/48/32, e.g. in tests)
  and ``growth_rate`` (DenseNet201's 32; the demo's narrower DenseNet201 takes 12);
- ``dense_head``: ``encoder`` (the encoder part it classifies; default "densenet"), ``dropout``;
- ``unet``: ``block`` ("res_se" | "double_conv"), ``filters`` (five widths), ``dual_encoder``
  (bool) with ``encoder`` (the encoder part whose block-4 features it takes; default
  "densenet"), ``multitask`` (bool: the MT-UNet class head);
- ``fusion``: ``encoder`` and ``decoder`` (the parts whose features it pools; default
  "densenet" and "unet"), ``hidden``, ``dropout``;

Widths that come from another part (the encoder's feature channels, the decoder's width) are
read from that part once built.
- ``classifier``: ``model`` (a registry name, required), ``weights``, ``dropout``;
- ``gazegnn``: ``image_size`` (the square network input, 224), ``channels`` and ``blocks``
  (four each; Pyramid-ViG-Ti's 48/96/240/384 and 2/2/6/2 by default), ``dropout``,
  ``weights`` ("none", or a ``.weights.h5`` file made by ``cxrkit models convert-weights``).

Register a new builder with ``@BUILDERS.register("name", options={"key": type, ...})`` on a
function ``(context, **options) -> keras.Model``.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cxrkit.errors import CxrkitError
from cxrkit.models.keras_saving_cache import cache_attribute_skipsets
from cxrkit.recipes.registry import Registry


@dataclass(frozen=True)
class Builder:
    """A registered part builder, the options (name -> type) it accepts, those it requires,
    and those that name another part (with the name they default to)."""

    build: Callable
    options: dict = field(default_factory=dict)
    required: tuple[str, ...] = ()
    references: dict = field(default_factory=dict)


BUILDERS = Registry("builder", Builder)


@dataclass
class PartContext:
    """What a builder may use: the part's name, the data's input shape and class count, and
    ``part(name)``, which returns another part of the recipe (built on first use)."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    part: Callable


def check_options(builder: str, options: dict, where: str, parts=()) -> None:
    """Unknown, missing or mistyped options of a part, or references to parts not among
    ``parts``; :class:`CxrkitError` naming them."""
    from cxrkit.recipes.schema import conforms, type_name

    spec = BUILDERS[builder]
    for key, value in options.items():
        if key not in spec.options:
            raise CxrkitError(f"recipe: {where} has unknown option {key!r}; builder {builder!r}"
                              f" takes {', '.join(spec.options) or 'none'}")
        if not conforms(value, spec.options[key]):
            raise CxrkitError(f"recipe: {where}.{key} must be {type_name(spec.options[key])}")
    for key in spec.required:
        if key not in options:
            raise CxrkitError(f"recipe: {where} lacks {key!r}")
    for key, default in spec.references.items():
        if options.get(key, default) not in parts:
            raise CxrkitError(f"recipe: {where}.{key} names unknown part "
                              f"{options.get(key, default)!r}")


def _weights(options: dict) -> dict:
    """``weights = "none"`` is an explicit random initialisation (``weights=None``)."""
    if "weights" in options:
        return {**options, "weights": None if options["weights"] == "none" else
                options["weights"]}
    return options


def _width(ctx: PartContext, part: str, output: str) -> int:
    """Channels of another part's named output (that part is built first if need be)."""
    return int(ctx.part(part).output[output].shape[-1])


@BUILDERS.register("densenet_encoder", options={"weights": str, "blocks": list,
                                                "growth_rate": int})
def _densenet_encoder(ctx: PartContext, **options):
    from cxrkit.models import build_densenet_encoder

    return build_densenet_encoder(ctx.input_shape, name=ctx.name, **_weights(options))


@BUILDERS.register("dense_head", options={"encoder": str, "dropout": float},
                   references={"encoder": "densenet"})
def _dense_head(ctx: PartContext, *, encoder: str = "densenet", **options):
    from cxrkit.models import build_dense_head

    return build_dense_head(ctx.num_classes, channels=_width(ctx, encoder, "features"),
                            name=ctx.name, **options)


@BUILDERS.register("unet", options={"block": str, "decoder_block": str, "filters": list,
                                    "dual_encoder": bool, "encoder": str, "multitask": bool})
def _unet(ctx: PartContext, *, dual_encoder: bool = False, encoder: str = "densenet",
          multitask: bool = False, **options):
    from cxrkit.models import MultiTaskUNet, build_unet

    if "filters" in options:
        options["filters"] = tuple(options["filters"])
    unet = build_unet(ctx.input_shape,
                      dual_channels=_width(ctx, encoder, "block4") if dual_encoder else None,
                      num_classes=ctx.num_classes if multitask else None, name=ctx.name,
                      **options)
    return MultiTaskUNet(unet, name=f"{ctx.name}_multitask") if multitask else unet


@BUILDERS.register("fusion", options={"encoder": str, "decoder": str, "hidden": int,
                                      "dropout": float},
                   references={"encoder": "densenet", "decoder": "unet"})
def _fusion(ctx: PartContext, *, encoder: str = "densenet", decoder: str = "unet",
            **options):
    from cxrkit.models import build_fusion_head

    return build_fusion_head(ctx.num_classes, dense_channels=_width(ctx, encoder, "features"),
                             decoder_channels=_width(ctx, decoder, "decoder_features"),
                             name=ctx.name, **options)


@BUILDERS.register("classifier", options={"model": str, "weights": str, "dropout": float},
                   required=("model",))
def _classifier(ctx: PartContext, *, model: str, **options):
    from cxrkit.models import build_classifier

    return build_classifier(model, num_classes=ctx.num_classes, input_shape=ctx.input_shape,
                            **_weights(options))


@BUILDERS.register("gazegnn", options={"image_size": int, "channels": list, "blocks": list,
                                       "dropout": float, "weights": str})
def _gazegnn(ctx: PartContext, *, weights: str = "none", **options):
    from cxrkit.models.gazegnn import build_gazegnn

    for key in ("channels", "blocks"):
        if key in options:
            options[key] = tuple(options[key])
    model = build_gazegnn(ctx.input_shape, ctx.num_classes, name=ctx.name, **options)
    if weights != "none":
        if not Path(weights).is_file():
            raise CxrkitError(f"parts.{ctx.name}.weights: {weights} is not a file (convert the "
                              "authors' checkpoint with `cxrkit models convert-weights`)")
        model.load_weights(weights)
    return model


def part_seed(seed: int, name: str) -> int:
    """The seed of part ``name``'s initial weights, from the recipe's ``seed`` and the name."""
    return zlib.crc32(f"{seed}/{name}".encode())


def build_parts(names: list[str], parts: dict, input_shape, num_classes: int, *,
                seed: int | None = None) -> dict:
    """Fresh models for the parts ``names`` (and the parts they depend on), in order.

    With ``seed``, each part's initial weights are drawn from :func:`part_seed` (and, after
    each part it takes from another, from a seed of that pair), so a part starts from the same
    weights whichever other parts a run builds and in whichever order: a run of some stages
    (``--models``, a side process) trains the same models as the whole recipe.
    """
    built: dict = {}

    def reseed(key: str) -> None:
        if seed is not None:
            import keras

            keras.utils.set_random_seed(part_seed(seed, key))

    def part(name: str):
        if name not in parts:
            raise CxrkitError(f"recipe: a part refers to part {name!r}, which the recipe "
                              f"lacks; it has {', '.join(parts)}")
        if name not in built:
            spec = parts[name]

            def dependency(other: str):
                found = part(other)
                reseed(f"{name}/after/{other}")
                return found

            context = PartContext(name, tuple(input_shape), num_classes, dependency)
            reseed(name)
            built[name] = BUILDERS[spec.builder].build(context, **dict(spec.options))
        return built[name]

    for name in names:
        part(name)
    return built


def part_path(out: Path, name: str) -> Path:
    """Where a part is saved after the stage that trains it."""
    return out / "parts" / f"{name}.keras"


def save_part(part, path: Path) -> None:
    """Saves a part atomically (a stage counts as done only when its parts exist whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.keras")
    cache_attribute_skipsets()
    part.save(partial)
    partial.replace(path)


WEIGHTS_MEMBER = "model.weights.h5"  # where a .keras file keeps its weights


def load_part_weights(model, path: Path) -> None:
    """``model.load_weights(path)`` for a saved part (a ``.keras`` file), the same weights
    read a faster way: Keras reads the HDF5 weights inside the zip in place, and each of
    h5py's backward seeks re-reads the member from its start (1.2-1.5 s instead of 3.3-3.4 s
    for the demo's DenseNet201 on 2 CPU cores). Here the member is read whole into a
    temporary ``.weights.h5`` file, which Keras loads as it loads the zip's. A file that is
    not a Keras zip with weights raises ``CxrkitError`` naming it."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(WEIGHTS_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as err:
        raise CxrkitError(f"{path}: not a saved Keras model with {WEIGHTS_MEMBER} "
                          f"({err})") from None
    cache_attribute_skipsets()
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "part.weights.h5"
        weights.write_bytes(data)
        model.load_weights(weights)


def publish(source: Path, target: Path) -> None:
    """Copies a stage's saved part to ``parts/`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
