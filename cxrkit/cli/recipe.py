"""``cxrkit recipe``: list, show and run declarative experiments."""

from __future__ import annotations

import json
import shutil
import tempfile

import click


@click.group()
def recipe() -> None:
    """Declarative experiments: list, show and run recipes such as mlmi2024."""


@recipe.command("list")
def list_command() -> None:
    """The recipes shipped with cxrkit."""
    from cxrkit.recipes import list_recipes, load_recipe

    for name in list_recipes():
        click.echo(f"{name}: {load_recipe(name).get('description', '')}")


@recipe.command()
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a field, e.g. stages.saliency.epochs=5 (repeatable).")
@click.option("--demo", is_flag=True, help="Show the demo profile (what runs without --data).")
def show(name: str, overrides: tuple[str, ...], demo: bool) -> None:
    """Print the resolved recipe NAME (or a path to a .toml file) as JSON.

    Every stage shows the values it runs with, those it takes from [training] and [data]
    (epochs, learning rate, optimizer, batch size) included.
    """
    from cxrkit.recipes import resolve

    click.echo(json.dumps(resolve(name, overrides, demo=demo).to_dict(), indent=2))


def _split_cpu(devices: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)


@recipe.command()
@click.argument("name")
@click.option("--data", type=click.Path(file_okay=False, exists=True), default=None,
              help="Converted records (manifest.json). Without it: the demo on phantom data.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: runs/<recipe name>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a field, e.g. stages.saliency.epochs=5 (repeatable).")
@click.option("--models", "stages", default=None, metavar="A,B,...",
              help="Run only these stages, e.g. the mlmi2023 backbones resnet18,vgg16.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run in --out: skip verified stages.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multi-worker"]),
              default="default", show_default=True,
              help="tf.distribute strategy (multi-worker reads TF_CONFIG).")
@click.option("--cpu-devices", type=click.IntRange(min=1), default=None,
              help="Split the CPU into N logical devices (try 'mirrored' without GPUs).")
def run(name, data, out, overrides, stages, resume, strategy, cpu_devices) -> None:
    """Run recipe NAME (or a .toml path): train every stage, evaluate, report.

    Without --data it runs the recipe's demo profile on phantom data it generates first.
    """
    from pathlib import Path

    from cxrkit.recipes import check_out, demo_note, resolve, run_recipe
    from cxrkit.recipes.multi_worker import worker_role

    stages = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    demo = data is None
    plan = resolve(name, overrides, demo=demo, stages=stages)  # bad input fails before work
    out = Path(out or Path("runs") / plan.name)
    role = worker_role(strategy)
    if role is not None and resume:
        raise click.UsageError("--resume is not supported with --strategy multi-worker (each "
                               "worker would need the chief's checkpoint); start a new --out")
    scratch = None
    if role is not None and not role.chief:
        scratch = Path(tempfile.mkdtemp(prefix=f"cxrkit-worker{role.index}-"))
        click.echo(f"worker {role.index} of {role.count}: training with the chief, which "
                   "writes the checkpoints, TensorBoard logs, models and report under its "
                   f"--out; this worker writes nothing to {out}")
        out = scratch
    restart = check_out(out, plan, resume)  # bad input fails before any work
    if restart:
        click.echo(restart)
    if cpu_devices:
        _split_cpu(cpu_devices)
    try:
        if demo:
            from data_prep.demo import prepare_demo_records

            click.echo(demo_note(plan))
            data = prepare_demo_records(plan.data.dataset, plan.demo, out / "data", click.echo)
        run_recipe(plan, data, out=out, resume=resume, strategy=strategy, demo=demo,
                   echo=click.echo)
    except Exception as err:
        if role is None or not _is_tf_error(err):
            raise
        raise click.ClickException(_worker_error(role, err)) from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _is_tf_error(err: Exception) -> bool:
    import tensorflow as tf

    return isinstance(err, tf.errors.OpError)


def _worker_error(role, err) -> str:
    """One line for a TensorFlow error on a cluster worker: which worker, what failed and the
    likely cause, instead of the gRPC traceback."""
    import tensorflow as tf

    first = " ".join(str(err.message).split())
    first = first.split(" Additional GRPC error information")[0][:300]
    cause = ("another worker stopped or cannot be reached (check its output, TF_CONFIG's "
             "addresses and that every worker runs the same command)"
             if isinstance(err, tf.errors.UnavailableError | tf.errors.CancelledError |
                           tf.errors.DeadlineExceededError) else "")
    return (f"worker {role.index} of {role.count}: training stopped: "
            f"{type(err).__name__}: {first}" + (f" — {cause}" if cause else ""))
