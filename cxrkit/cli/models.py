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
