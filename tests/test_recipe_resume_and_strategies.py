"""Recipe runs on demo-size EGD-CXR records (--data): a killed run resumes in its interrupted
stage, and a stage trains under MirroredStrategy and MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import cxrkit_command, quiet_env, sets


def test_killed_run_resumes_in_the_interrupted_stage(egd_records, tmp_path):
    """Two small stages on demo-size records: killed in the second, resumed with --resume.
    The finished stage is skipped untouched; the second continues from its last epoch."""
    records = egd_records
    out = tmp_path / "run"
    command = cxrkit_command(
        "recipe", "run", "mlmi2024-demo", "--data", str(records), "--out", str(out),
        "--models", "unet_s,res_se_unet",
        *sets(["data.batch_size=6", "stages.unet_s.epochs=1", "stages.res_se_unet.epochs=4",
               "training.early_stopping_patience=0", "training.reduce_lr_patience=0",
               "training.run_eagerly=true", "training.checkpoint=true"]))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=quiet_env())
    metadata = out / "stages" / "res_se_unet" / "backup" / "training_metadata.json"

    def checkpointed() -> bool:  # an epoch's checkpoint is whole once its metadata parses
        try:
            return json.loads(metadata.read_text())["epoch"] >= 1
        except (OSError, ValueError, KeyError):
            return False

    deadline = time.monotonic() + 600
    while not checkpointed() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpointed(), "the run never reached its second stage"
    assert not (out / "stages" / "res_se_unet" / "done.json").exists()
    finished = out / "stages" / "unet_s" / "parts" / "unet_s.keras"
    before = finished.read_bytes()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             env=quiet_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "stage unet_s: done (artifacts verified), skipped" in resumed.stdout
    match = re.search(r"stage res_se_unet: resuming from its checkpoint after epoch (\d+)",
                      resumed.stdout)
    assert match, resumed.stdout[-2000:]
    after_epoch = int(match.group(1))
    assert 1 <= after_epoch < 4
    assert finished.read_bytes() == before
    done = json.loads((out / "stages" / "res_se_unet" / "done.json").read_text())
    assert done["epochs_run"] == 4 - after_epoch  # only the remaining epochs ran
    trace = json.loads((out / "run.json").read_text())
    assert trace["resumed"][0]["stages"] == ["unet_s", "res_se_unet"]
    document = json.loads((out / "metrics.json").read_text())
    assert set(document["stages"]) == {"unet_s", "res_se_unet"}


def test_mirrored_strategy(egd_records, tmp_path):
    """One small stage under MirroredStrategy on the CPU split into two logical devices. Its
    steps run eagerly (still through ``strategy.run`` on mirrored variables): tracing the
    replicated training graph costs 5x more than the few steps of the test. (Several workers:
    tests/test_multi_worker.py.)"""
    command = cxrkit_command("recipe", "run", "mlmi2024-demo", "--data", str(egd_records),
                             "--out", str(tmp_path / "run"), "--models", "unet_s",
                             "--strategy", "mirrored", "--cpu-devices", "2",
                             *sets(["data.batch_size=6", "stages.unet_s.epochs=1",
                                    "training.run_eagerly=true"]))
    result = subprocess.run(command, capture_output=True, text=True, env=quiet_env(),
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("strategy: "))
    assert line.startswith("strategy: mirrored (") and ", 2 replica(s)" in line
    done = json.loads((tmp_path / "run" / "stages" / "unet_s" / "done.json").read_text())
    assert np.isfinite(done["history"]["loss"]).all()
    document = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert document["stages"]["unet_s"]["saliency"]["kl"]["mean"] > 0


def test_a_run_that_failed_before_any_stage_restarts_cleanly(egd_records, tmp_path):
    """A missing weights file ends the run before its first stage; the same command again
    starts afresh instead of refusing the folder, and a run with progress is still kept."""
    from click.testing import CliRunner

    from cxrkit.cli import cli

    out = tmp_path / "run"
    command = ["recipe", "run", "mlmi2024-demo", "--data", str(egd_records), "--out", str(out),
               "--models", "triplet",
               *sets(["parts.densenet.weights=/absent/densenet.weights.h5",
                      "parts.densenet.growth_rate=32"])]  # the study's width: weights exist
    first = CliRunner().invoke(cli, command)
    assert first.exit_code == 1 and (out / "run.json").is_file()
    assert first.output.strip().splitlines()[-1] == (
        "Error: /absent/densenet.weights.h5: weights not found (expected a keras-hub preset "
        "directory or a .weights.h5 file)")
    again = CliRunner().invoke(cli, command)
    assert again.exit_code == 1 and "already holds a run" not in again.output
    assert f"{out}: the run there stopped before any stage finished; starting it afresh" \
        in again.output
    from cxrkit.errors import CxrkitError
    from cxrkit.recipes import check_out, resolve

    (out / "stages" / "triplet").mkdir(parents=True)
    (out / "stages" / "triplet" / "done.json").write_text("{}")
    with pytest.raises(CxrkitError, match="already holds a run; pass --resume"):
        check_out(out, resolve("mlmi2024-demo"), resume=False)
