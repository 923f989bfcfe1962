"""Independent stages trained in a second process while the main process trains the others.

``[training] side_process = true`` (the mlmi2024 demo) moves every *independent* stage — one
whose parts no other enabled stage uses, such as mlmi2024's baselines UNet, MT-UNet and
GazeGNN, which share nothing with the DenseNet201 chain — to one child process
(``python -m cxrkit.recipes.side_process``), started before the first stage. When every stage
is independent (the mlmi2023 backbones), the side process takes the later half. On a CPU most
of a demo stage is tracing and first running its graphs, single-threaded Python work, so two
processes do it side by side on two cores.

The child also evaluates each side stage on the test split as soon as it has trained it
(``stages/<name>/evaluation.pkl``) and writes the cards of its part files. The main process
still prints the stages in the recipe's order. When it comes to a side stage it waits until
the child has finished it and prints what the child printed for it (kept in
``stages/<name>/console.txt``). It never builds a side stage's parts, unless it needs the model
after training (:func:`loaded_back`: the final model, the report's Grad-CAM stage); those it
loads, verified against their ``done.json`` digests, exactly as ``--resume`` loads a finished
stage. It takes the side stages' evaluations from the child's files. If a side stage fails,
the main process stops with its error, naming the child's output (``side/stderr.txt`` holds
the child's standard error and tracebacks). The child ends when the main process ends, killed
or not.

When the run exports its final model (``[export] name``; :func:`exported_stage`), the child
makes the SavedModel too: after its stages it builds that model, traces its signatures and
saves it, still hidden (:func:`cxrkit.serving.export.stage_export`), waits until the main
process has trained its last stage (``side/parts_final``), loads the final part files and
writes their weights into it (about a second), while the main process evaluates and reports.
It records the version folder or its error in ``side/export.json``, which the main process
reads before its closing lines.

Results do not depend on where a stage ran: each part's initial weights come from a seed of its
own (:func:`cxrkit.recipes.parts.build_parts`) and each stage's training from its own
(:meth:`cxrkit.recipes.engine.Run.seed_stage`). It is off for multi-worker and mirrored runs
(their processes and devices are already spoken for), and there is no side process when no
stage can go aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from cxrkit.errors import CxrkitError
from cxrkit.files import write_text_atomic
from cxrkit.recipes.schema import Recipe

CONSOLE = "console.txt"  # a side stage's printed output, under stages/<name>/
STATUS = "side.json"     # written by the child when a side stage ended: done, or its error
EVALUATION = "evaluation.pkl"  # a side stage's test-split evaluation, under stages/<name>/
PARTS_FINAL = "parts_final"  # under side/: the main process trained its last stage
EXPORTED = "export.json"     # under side/: the child's export, done (its folder) or its error


def independent_stages(recipe: Recipe) -> list[str]:
    """The enabled stages whose parts no other enabled stage uses, in the recipe's order."""
    stages = recipe.enabled_stages()
    found = []
    for name, stage in stages.items():
        others = {p for n, s in stages.items() if n != name for p in s.parts.values()}
        if not others & set(stage.parts.values()):
            found.append(name)
    return found


def exported_stage(recipe: Recipe) -> str | None:
    """The stage whose model a run exports for TensorFlow Serving: ``[report]
    classification_reference`` when ``[export]`` names the model and that stage is enabled."""
    if recipe.export.name and recipe.report.classification_reference in recipe.enabled_stages():
        return recipe.report.classification_reference
    return None


def loaded_back(recipe: Recipe, names: list[str]) -> list[str]:
    """The side stages among ``names`` whose models the main process needs after training:
    the final stage's (``model.keras``, the SavedModel) and the report's Grad-CAM stage. It
    builds their parts and loads them once trained; the other side stages' parts it never
    builds (their test-split evaluation comes from the child, ``stages/<name>/`` +
    :data:`EVALUATION`)."""
    wanted = {recipe.final_stage(), recipe.report.gradcam_stage}
    return [name for name in names if name in wanted]


def evaluation_of(out: Path, name: str) -> dict:
    """Side stage ``name``'s test-split evaluation, as the child wrote it."""
    from cxrkit.recipes.evaluate import load_evaluation

    return load_evaluation(out / "stages" / name / EVALUATION)


def side_stages(recipe: Recipe, strategy: str) -> list[str]:
    """The stages a run of ``recipe`` trains in the side process (none when it is off)."""
    if not recipe.training.side_process or strategy != "default":
        return []
    names = independent_stages(recipe)
    if len(names) == len(recipe.enabled_stages()):
        # all independent: the child takes the later half, so that this process never waits
        # for it before a stage of its own (it prints the stages in the recipe's order)
        names = names[(len(names) + 1) // 2:]
    return names


class SideProcess:
    """The child process that trains ``names`` into ``out``; see the module docstring."""

    def __init__(self, recipe: Recipe, data: Path, out: Path, names: list[str], *,
                 resume: bool):
        self.out, self.names = out, names
        self.exports = exported_stage(recipe)  # exported here, once the main process is done
        self.folder = folder = out / "side"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:  # a status left by an earlier run says nothing of this one
            (out / "stages" / name / STATUS).unlink(missing_ok=True)
        for stale in (PARTS_FINAL, EXPORTED):
            (folder / stale).unlink(missing_ok=True)
        (folder / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
        self.log = folder / "stderr.txt"
        command = [sys.executable, "-m", "cxrkit.recipes.side_process", str(os.getpid()),
                   str(folder / "recipe.json"), str(data), str(out), ",".join(names)]
        if resume:
            command.append("--resume")
        if self.exports:
            command.append(f"--export={self.exports}")
        with open(self.log, "w") as stderr:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                            stdout=stderr, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def _record(self, status: Path, before: str, doing: str = "") -> dict:
        """The child's status file ``status`` once it exists; a ``CxrkitError`` if the child
        ends without writing it (``before``: what it had not done yet)."""
        while not status.is_file():
            if self.process.poll() is not None and not status.is_file():
                raise CxrkitError(f"the side process {doing}ended (exit "
                                  f"{self.process.returncode}) before {before}; its output: "
                                  f"{self.log}")
            time.sleep(0.2)
        return json.loads(status.read_text())

    def wait_for(self, name: str, echo) -> None:
        """Blocks until the child ended stage ``name``, echoes its output, raises its error."""
        record = self._record(self.out / "stages" / name / STATUS, f"stage {name}",
                              f"training {', '.join(self.names)} ")
        console = self.out / "stages" / name / CONSOLE
        if console.is_file():
            for line in console.read_text().splitlines():
                echo(line)
        if record["status"] != "done":
            raise CxrkitError(f"stage {name} failed in the side process: {record['error']} "
                              f"(its output: {console}; the traceback: {self.log})")

    def parts_final(self) -> None:
        """Tells the child that the main process has trained its last stage: every part file
        under ``parts/`` holds its final weights, and the export may begin."""
        (self.folder / PARTS_FINAL).write_text("")

    def wait_export(self) -> Path:
        """Blocks until the child exported the final model; returns the version folder,
        raises ``CxrkitError`` with the child's error."""
        record = self._record(self.folder / EXPORTED, "exporting the model")
        if record["status"] != "done":
            raise CxrkitError(f"the SavedModel export failed in the side process: "
                              f"{record['error']} (the traceback: {self.log})")
        return Path(record["folder"])

    def stop(self) -> None:
        """Ends the child (at once if it is still running: the main run has stopped)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _exit_with(parent: int) -> None:
    """Ends this process once the main process is gone: killed, it cannot stop its child."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _train(recipe_json: Path, data: Path, out: Path, names: list[str], resume: bool) -> None:
    """Trains (or, resumed, loads) each stage of ``names``, then evaluates it on the test
    split and writes the cards of its part files, as the main process does for its own."""
    from cxrkit.cli.quiet import quiet_tensorflow

    quiet_tensorflow(False)  # as the command line does; CXRKIT_VERBOSE=1 passes through
    from cxrkit.recipes import engine
    from cxrkit.recipes.config import select_stages
    from cxrkit.recipes.evaluate import evaluate_stage, load_test_split, save_evaluation
    from cxrkit.recipes.run import save_part_cards
    from cxrkit.recipes.schema import parse
    from cxrkit.recipes.tasks import stage_model

    recipe = parse(select_stages(json.loads(recipe_json.read_text()), names))
    engine.configure_process(recipe)
    run = engine.Run(recipe, data, out, resume=resume)
    run.build_parts()
    test = None
    for name in names:
        stage, folder = recipe.stages[name], run.stage_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EVALUATION).unlink(missing_ok=True)  # an earlier run's says nothing now
        with open(folder / CONSOLE, "w") as console, contextlib.redirect_stdout(console):
            try:
                if not run.completed(name):
                    run.train_stage(stage)
                model = stage_model(stage, run.parts)
                if stage.evaluate != "none":
                    test = load_test_split(data) if test is None else test
                    save_evaluation(evaluate_stage(stage, model, test, run.class_names),
                                    folder / EVALUATION)
                save_part_cards(run, stage, model)
                status = {"status": "done"}
            except Exception as err:  # reported by the main process, which stops
                traceback.print_exc()  # to the child's standard error: side/stderr.txt
                status = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        write_text_atomic(folder / STATUS, json.dumps(status) + "\n")  # read once it exists
        if status["status"] != "done":
            raise SystemExit(1)


def final_parts(recipe: Recipe, out: Path) -> list[str]:
    """The parts whose weights are final in ``out``: the last enabled stage that trains each
    has finished (its ``done.json``), so ``parts/<part>.keras`` will not change again."""
    last = {}
    for name, stage in recipe.enabled_stages().items():
        for part in stage.trainable:
            last[part] = name
    return [part for part, name in last.items()
            if (out / "stages" / name / "done.json").is_file()]


def _export(recipe_json: Path, data: Path, out: Path, name: str) -> None:
    """Exports stage ``name``'s model with the final part files, as the main process would
    have: the same parts, card and SavedModel layout
    (:func:`cxrkit.serving.export.stage_export`). The signatures are traced and the
    SavedModel staged first, while the main process still trains (the signatures read the
    weights loaded afterwards, and publishing writes them into it); each part's
    weights are loaded once they are final (:func:`final_parts`), and every part file is
    checked again once the main process says all are (``side/parts_final``): one that
    changed since (a resumed run that trained a stage again) is loaded again."""
    from cxrkit.recipes import engine
    from cxrkit.recipes.config import select_stages
    from cxrkit.recipes.parts import load_part_weights, part_path
    from cxrkit.recipes.run import stage_card
    from cxrkit.recipes.schema import parse
    from cxrkit.recipes.tasks import stage_model
    from cxrkit.serving.export import build_servable, stage_export

    folder = out / "side"
    try:
        resolved = json.loads(recipe_json.read_text())
        recipe = parse(select_stages(resolved, [name]))  # a copy
        whole = parse(resolved)
        run = engine.Run(recipe, data, out)
        run.build_parts()
        stage = recipe.stages[name]
        card = stage_card(run, stage)
        servable = build_servable(stage_model(stage, run.parts), card)
        loaded = {}  # part -> (mtime, size) of the file its weights were loaded from

        def load(parts, *, early: bool) -> None:
            for part in parts:
                path = part_path(out, part)
                if not path.is_file():
                    continue  # never trained: the seeded initial weights
                stat = path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if loaded.get(part) != stamp:
                    try:
                        load_part_weights(run.parts[part], path)
                    except Exception:
                        if not early:
                            raise
                        continue  # a file being replaced: loaded at the end
                    loaded[part] = stamp

        # saved now, while the main process trains; publishing writes the final weights in
        staged = stage_export(servable, card, recipe.export.name, to=out / "saved_models")
        while not (folder / PARTS_FINAL).is_file():
            load([p for p in final_parts(whole, out) if p in run.parts], early=True)
            time.sleep(0.2)
        load(list(run.parts), early=False)
        target = staged.publish()
        status = {"status": "done", "folder": str(target)}
    except Exception as err:  # reported by the main process, which stops
        traceback.print_exc()
        status = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    write_text_atomic(folder / EXPORTED, json.dumps(status) + "\n")


if __name__ == "__main__":
    from cxrkit import gc_policy

    gc_policy.for_traced_models()  # as the command line does
    args = sys.argv[1:]
    _exit_with(int(args[0]))
    _train(Path(args[1]), Path(args[2]), Path(args[3]), args[4].split(","),
           "--resume" in args[5:])
    for flag in args[5:]:
        if flag.startswith("--export="):
            _export(Path(args[1]), Path(args[2]), Path(args[3]), flag.split("=", 1)[1])
