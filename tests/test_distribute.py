"""tf.distribute: mirrored on 2 logical CPUs equals single-device training; multi-worker TF_CONFIG.

Logical devices must be configured before TensorFlow initializes, so each
distributed run happens in a fresh ``python -c`` subprocess that prints one JSON
line (its last stdout line) for the test to check.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_stripes_dataset as make_data

from dnn_tf import files
from dnn_tf.cli import train as train_cli
from dnn_tf.training import distribute, loop
from dnn_tf.training.config import RunSettings, TrainConfig
from dnn_tf.training.presets import Preset

SUBPROCESS_TIMEOUT = 120  # seconds; a healthy run takes 5-20 s on 2 busy cores
LOSS_RTOL = 1e-4  # mirrored vs default: the same math, summed in another order
LOSS_ATOL = 1e-6  # for losses that have reached ~0

# Run inside the subprocess before anything else: 2 logical CPUs, the data, and a quiet train().
PREAMBLE = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {devices})
import logging
from dnn_tf.training import inference, loop
from dnn_tf.training.config import RunSettings, TrainConfig
from dnn_tf.training.presets import Preset
data = dict(np.load({data!r}))

def make(**fields):
    return Preset("t", TrainConfig(), RunSettings()).replace(**fields)

class Lines(logging.Handler):
    def __init__(self, log):
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record):
        self.log(record.getMessage())

def run(preset, log=None, **kwargs):
    logger = logging.getLogger("dnn_tf")
    logger.setLevel(logging.INFO)
    handler = Lines(log or (lambda line: None))
    logger.addHandler(handler)
    try:
        return loop.train_and_evaluate(preset.config, data, preset.settings, name=preset.name, **kwargs)
    finally:
        logger.removeHandler(handler)

def losses(result):
    return [h["loss"] for h in result.history]
"""


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "stripes.npz"
    np.savez(path, **make_data())
    return str(path)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != distribute.TF_CONFIG_ENV}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def run_script(body: str, data_file: str, devices: int = 2) -> dict:
    """Runs PREAMBLE + body in a fresh interpreter; returns the JSON of its last stdout line."""
    code = PREAMBLE.format(devices=devices, data=data_file) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(),
                          timeout=SUBPROCESS_TIMEOUT, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_same_curve(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b) > 3
    np.testing.assert_allclose(a, b, rtol=LOSS_RTOL, atol=LOSS_ATOL)


# --------------------------------------------------------------------------- mirrored


def test_mirrored_on_two_logical_cpus_matches_single_device(data_file):
    out = run_script("""
        base = make(hidden_sizes=(32,), optimizer="momentum", learning_rate=0.02, l2_beta=1e-3,
                    max_shift=1, max_rotation=10, decay_steps=20, decay_rate=0.5, batch_size=32, steps=50,
                    log_every=10, checkpoint_every=0, seed=3)
        uneven = base.replace(batch_size=33, batching="offset")
        default, mirrored = run(base), run(base.replace(strategy="mirrored"))
        u_default, u_mirrored = run(uneven), run(uneven.replace(strategy="mirrored", steps_per_call=7))
        print(json.dumps({
            "default": losses(default), "mirrored": losses(mirrored),
            "acc": [default.valid_accuracy, mirrored.valid_accuracy, default.test_accuracy, mirrored.test_accuracy],
            "uneven_default": losses(u_default), "uneven_mirrored": losses(u_mirrored),
            "steps": [h["step"] for h in u_mirrored.history],
            "device": mirrored.device, "replicas": mirrored.replicas, "default_device": default.device,
            "default_replicas": default.replicas,
            "variable": type(mirrored.model.weights[0]).__name__}))
    """, data_file)
    assert out["replicas"] == 2 and out["default_replicas"] == 1
    assert out["device"] == "mirrored: 2 replicas on CPU:0, CPU:1" and out["default_device"] == "/CPU:0"
    assert out["variable"] == "MirroredVariable"
    assert_same_curve(out["mirrored"], out["default"])
    assert out["default"][-1] < out["default"][0] / 3  # it did learn
    valid_d, valid_m, test_d, test_m = out["acc"]
    assert valid_m == pytest.approx(valid_d, abs=0.5) and test_m == pytest.approx(test_d, abs=0.5)
    # a batch of 33 splits 16 + 17 and still gives the same updates; steps_per_call loops strategy.run
    assert out["steps"] == [0, 10, 20, 30, 40, 49]
    assert_same_curve(out["uneven_mirrored"], out["uneven_default"])


def test_mirrored_checkpoint_resume_divergence_export_and_xla_refusal(data_file, tmp_path):
    out = run_script(f"""
        import os
        out = {str(tmp_path)!r}
        config = make(hidden_sizes=(16,), learning_rate=0.05, batch_size=32, steps=41,
                      log_every=10, checkpoint_every=20, strategy="mirrored")
        full = run(config, out_dir=os.path.join(out, "full"))

        class Interrupt(Exception):
            pass

        def crash_at_30(line):
            if line.startswith("Minibatch loss at step 30"):
                raise Interrupt

        try:  # interrupted on one device, resumed on two
            run(config.replace(strategy="default"), out_dir=os.path.join(out, "cut"), log=crash_at_30)
        except Interrupt:
            pass
        lines = []
        resumed = run(config, out_dir=os.path.join(out, "cut"), resume=True, log=lines.append)

        images = data["test_dataset"][:40]
        exported = inference.predict(os.path.join(out, "full"), images)
        in_memory = inference.predict(full.model, images)

        try:
            run(config.replace(hidden_sizes=(64, 64), learning_rate=1e6, steps=200, checkpoint_every=1, log_every=100),
                out_dir=os.path.join(out, "nan"))
            diverged = None
        except loop.TrainingDiverged as e:
            diverged = str(e)
        ckpt = tf.train.latest_checkpoint(os.path.join(out, "nan", "checkpoints"))
        reader = tf.train.load_checkpoint(ckpt)
        weights = [reader.get_tensor(n) for n, _ in tf.train.list_variables(ckpt) if "model/" in n]

        try:
            run(config.replace(xla=True))
            xla = None
        except ValueError as e:
            xla = str(e)
        print(json.dumps({{
            "full": losses(full), "resumed": losses(resumed), "resumed_steps": [h["step"] for h in resumed.history],
            "resumed_from": [l for l in lines if "Resumed from" in l], "steps": resumed.steps,
            "acc": [full.valid_accuracy, resumed.valid_accuracy],
            "max_prediction_diff": float(np.abs(exported - in_memory).max()),
            "diverged": diverged, "last_good": ckpt, "weights_finite": bool(weights)
                and all(bool(np.all(np.isfinite(w))) for w in weights),
            "xla": xla}}))
    """, data_file)
    # resume: a checkpoint written on one device continues on two, on the same trajectory
    assert len(out["resumed_from"]) == 1 and "step 20" in out["resumed_from"][0]
    assert out["steps"] == 41 and out["resumed_steps"] == [0, 10, 20, 30, 40]
    assert_same_curve(out["resumed"], out["full"])
    assert out["acc"][1] == pytest.approx(out["acc"][0], abs=0.5)
    # the SavedModel of a mirrored run predicts what its model does
    assert out["max_prediction_diff"] < 1e-5
    # NaN guard: names the step, advises a lower rate, the last checkpoint is finite
    assert out["diverged"] is not None and "lower the learning rate" in out["diverged"]
    step = int(re.search(r"(?:at|by) step (\d+);", out["diverged"]).group(1))
    assert 1 <= int(out["last_good"].rsplit("-", 1)[1]) <= step + 1  # checkpoint N = after N steps
    assert out["last_good"] in out["diverged"] and out["weights_finite"]
    # XLA is refused with a clear error
    assert "xla is not supported with strategy 'mirrored'" in out["xla"]


# --------------------------------------------------------------------------- multi-worker


@pytest.mark.parametrize("tf_config, words", [
    (None, "needs the TF_CONFIG environment variable"),
    ("", "needs the TF_CONFIG environment variable"),
    ("{cluster: 1}", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "no cluster with a 'worker' list"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "'host:port' strings"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "task must be"),
    ('{"cluster": {"worker": ["a:1"]}}', "task must be"),
])
def test_multiworker_without_valid_tf_config_is_a_one_line_value_error(monkeypatch, tf_config, words):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    config = Preset("t", TrainConfig(steps=2, batch_size=4), RunSettings(strategy="multiworker"))
    with pytest.raises(ValueError, match=words) as err:
        loop.train_and_evaluate(config.config, make_data(40, 10), config.settings)
    message = str(err.value)
    assert "\n" not in message and "TF_CONFIG='{" in message  # says what to set, with an example


def test_cli_multiworker_without_tf_config_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    path = tmp_path / "data.pickle"
    files.save_pickle(path, make_data(40, 10))
    status = train_cli.main(["--data", str(path), "--out", str(tmp_path / "run"), "--strategy", "multiworker",
                             "--steps", "2", "--batch-size", "4", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0].startswith("dnn-tf-train: error: strategy 'multiworker' needs the TF_CONFIG")
    assert not (tmp_path / "run").exists()


def test_strategy_options_are_checked():
    with pytest.raises(ValueError, match="xla is not supported"):
        distribute.create_strategy(RunSettings(strategy="mirrored", xla=True))
    with pytest.raises(ValueError, match="only for strategy 'mirrored'"):
        distribute.create_strategy(RunSettings(), devices=["/CPU:0"])
    default = distribute.create_strategy(RunSettings())
    assert not distribute.is_distributed(default) and default.num_replicas_in_sync == 1
    assert distribute.parse_tf_config('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}')[
        "task"]["index"] == 0
    # the strategy is a run setting, not a hyperparameter: a checkpoint may continue on other devices
    assert "strategy" in RunSettings.__dataclass_fields__ and "strategy" not in TrainConfig.__dataclass_fields__


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


WORKER_SCRIPT = """
import json, logging, os, sys
import numpy as np
from dnn_tf.training import loop
from dnn_tf.training.config import RunSettings, TrainConfig
data = dict(np.load(sys.argv[1]))
config = TrainConfig(hidden_sizes=(16,), learning_rate=0.05, batch_size=32, steps=20)
settings = RunSettings(log_every=10, checkpoint_every=10, strategy="multiworker")

class Lines(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())

logging.getLogger("dnn_tf").addHandler(Lines())
logging.getLogger("dnn_tf").setLevel(logging.INFO)
out = []
for steps, resume in ((20, False), (31, True)):  # a run, then a longer one resumed from its checkpoint
    lines = []
    result = loop.train_and_evaluate(config.replace(steps=steps), data, settings, out_dir=sys.argv[2],
                                      resume=resume)
    out.append({"losses": [h["loss"] for h in result.history], "device": result.device,
                "replicas": result.replicas, "lines": lines[:3], "steps": result.steps})
print(json.dumps(out))
"""


def run_cluster(data_file: str, out: str) -> list[list[dict]]:
    """WORKER_SCRIPT in two processes on localhost (one TF_CONFIG each); returns their JSON results."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    procs = [subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, data_file, out],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
        env=clean_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(2)]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
            assert proc.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_two_workers_on_localhost_train_resume_and_match_single_device(data_file, tmp_path):
    out = str(tmp_path / "run")
    (chief_first, chief_second), (worker_first, worker_second) = run_cluster(data_file, out)
    assert os.path.isfile(os.path.join(out, "checkpoints", "ckpt-20.index"))  # the chief's
    assert os.path.isfile(os.path.join(out, "worker-1", "checkpoints", "ckpt-20.index"))  # worker 1's own
    assert chief_first["replicas"] == worker_first["replicas"] == 2
    assert chief_first["device"].startswith("multiworker: 2 replicas, this is worker 0")
    assert worker_first["device"].startswith("multiworker: 2 replicas, this is worker 1")
    assert any("Not the chief" in line for line in worker_first["lines"])
    assert not any("Not the chief" in line for line in chief_first["lines"])
    # the longer run continues from step 20 on both workers, in lockstep
    for second in (chief_second, worker_second):
        assert any("Resumed from" in line and "step 20" in line for line in second["lines"])
        assert second["steps"] == 31
    assert chief_second["losses"] == worker_second["losses"]
    single = loop.train_and_evaluate(
        TrainConfig(hidden_sizes=(16,), learning_rate=0.05, batch_size=32, steps=31), dict(np.load(data_file)),
        RunSettings(log_every=10, checkpoint_every=0))
    assert_same_curve(chief_second["losses"], [h["loss"] for h in single.history])
    metrics = json.loads(Path(out, "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [0, 10, 20, 30] and metrics["steps"] == 31
    assert Path(out, "saved_model", "saved_model.pb").is_file()
