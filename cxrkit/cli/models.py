"""``cxrkit models``: the zoo's catalogue and per-model descriptions."""

from __future__ import annotations

import json

import click


@click.group()
def models() -> None:
    """The model zoo: the nine MLMI 2023 backbones and the MLMI 2024 networks."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
def list_models(as_json: bool) -> None:
    """List every model with its Grad-CAM target and ImageNet preset."""
    from cxrkit.models.catalog import catalog

    rows = catalog()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("| name | kind | ImageNet preset | description |\n|---|---|---|---|")
    for r in rows:
        click.echo(f"| {r['name']} | {r['kind']} | {r['imagenet_preset'] or '-'} | "
                   f"{r['description']} |")


@models.command()
@click.argument("name")
@click.option("--input-size", default="224", show_default=True,
              help="Input side in pixels, or ROWSxCOLS.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe(name: str, input_size: str, as_json: bool) -> None:
    """Parameter counts, input shape, Grad-CAM target layer and weight options of NAME."""
    from cxrkit.models.catalog import describe as describe_model

    try:
        size = tuple(int(v) for v in input_size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{input_size!r} is not PX or ROWSxCOLS",
                                 param_hint="--input-size") from None
    info = describe_model(name, size[0] if len(size) == 1 else size)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@models.command("check-weights")
@click.argument("weights", type=click.Path())
@click.option("--model", "name", required=True,
              help="The backbone the weights are for, e.g. resnet18 or densenet201.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_weights(weights: str, name: str, as_json: bool) -> None:
    """Load WEIGHTS (a keras-hub preset folder or a .weights.h5 file) into backbone --model
    and report how many of its variables they set. Exit status 1 unless all are set and the
    preset's architecture is the model's."""
    from cxrkit.models.weights_check import check_weights as check

    report = check(name, weights)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{name} <- {weights}: {report['covered']} of {report['variables']} "
                   f"variables set ({report['coverage']:.1%})")
        for difference in report["architecture_differences"]:
            click.echo(f"  architecture differs: {difference}")
        if report["layers_missing"]:
            shown = ", ".join(report["layers_missing"][:10])
            more = len(report["layers_missing"]) - 10
            click.echo(f"  layers the weights do not set: {shown}"
                       + (f" ... and {more} more" if more > 0 else ""))
    if not report["ok"]:
        raise click.ClickException(f"{weights}: does not fully cover {name}; a run would train "
                                   "from partly random weights")


@models.command("convert-weights")
@click.argument("architecture", type=click.Choice(["pvig_ti"]))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write gazegnn.weights.h5 into.")
def convert_weights(architecture: str, checkpoint: str, out: str) -> None:
    """Convert the authors' PyTorch CHECKPOINT (pvig_ti: Pyramid-ViG-Ti ImageNet weights,
    pvig_ti_78.5.pth.tar) to Keras weights for the gazegnn part; no PyTorch needed."""
    from pathlib import Path

    from cxrkit.models.gazegnn import build_gazegnn, load_torch_state
    from cxrkit.models.torch_checkpoint import read_state_dict

    state = read_state_dict(checkpoint)
    model = build_gazegnn((224, 224, 1), 3)
    try:
        summary = load_torch_state(model, state)
    except ValueError as err:
        raise click.ClickException(f"{checkpoint}: {err}") from None
    Path(out).mkdir(parents=True, exist_ok=True)
    target = Path(out) / "gazegnn.weights.h5"
    model.save_weights(target)
    click.echo(f"{architecture} <- {checkpoint}: {summary['copied']} tensors copied; not used: "
               f"{', '.join(summary['left']) or 'none'} (the 3-class head and the gaze "
               f"BatchNorm start fresh, as in the authors' code)")
    click.echo(f"weights: {target} (--set parts.gazegnn.weights={target})")
