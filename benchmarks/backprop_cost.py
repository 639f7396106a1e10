"""Does back-propagation cost about twice the forward pass? Time and memory, measured.

The course says back-propagation takes about twice the memory and compute of
forward propagation. For the 1-hidden-layer net (784-1024-10) and a deep one
(784-1024-512-256-10) across batch sizes this measures:

* time: a compiled forward pass (logits + loss: ``dnn_tf.model.loss_fn``) vs a compiled
  training step (forward + backward + SGD update: ``dnn_tf.model.train_step`` with
  dnn_tf's ``SGD``), each running several iterations per call
  so the Python dispatch does not count; contenders interleaved, median of
  the rounds;
* memory, two ways (tracemalloc does not see TensorFlow's allocations):
  (1) measured -- the peak bytes TensorFlow's own allocator holds during one
  call above what it held before (``tf.config.experimental.get_memory_info``
  after ``reset_memory_stats``; on GPU:0 when there is one, else CPU:0, which
  TF 2.21 supports); (2) analytic -- bytes of the tensors the call must
  create: activations, plus for the training step the weight gradients, the
  activations kept for the backward pass and the activation gradients. The
  weights exist before either call and are left out of both (a column adds
  them back);
* the FLOP ratio of ``common.flops_per_example`` as the reference.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

from dnn_tf.notmnist import IMAGE_PIXELS, NUM_CLASSES  # noqa: E402

PROG = "backprop_cost"
STEM = "backprop_cost"
FLOAT_BYTES = 4
LEARNING_RATE = 1e-3
SEED = 0
TARGET_FLOP_PER_CALL = 4e9  # training-step FLOPs per timed call (~20-40 ms)
FULL_NETS = {"784-1024-10": (1024,), "784-1024-512-256-10": (1024, 512, 256)}
FULL_BATCHES = (32, 128, 512, 2048)
TINY_NETS = {"784-1024-10": (1024,)}
TINY_BATCHES = (32, 256)
MODES = ("forward", "train_step")
# The claim, read two ways: training step = 2x forward, or backward alone = 2x forward (step = 3x).
CLAIM_STEP_RATIO = 2.0
CLAIM_BACKWARD_RATIO = 2.0
CLAIM_TOLERANCE = 0.25  # within 25% of the claimed ratio counts as "about"
MIN_MEASURED_BYTES = 4 << 20  # TF's CPU allocator does not report allocations < 256 KiB: below this, no ratio


# --------------------------------------------------------------------------- compiled functions


def build(hidden, batch: int):
    """Returns (forward(x, y, n), train_step(x, y, n), x, y); each call runs ``n`` iterations."""
    import tensorflow as tf

    from dnn_tf import model as model_lib
    from dnn_tf.training.optimizers import SGD

    model = model_lib.MLP(hidden_sizes=tuple(hidden), init="he", seed=SEED)
    optimizer = SGD(LEARNING_RATE)
    rng = np.random.default_rng(SEED)
    x = tf.constant(rng.uniform(-0.5, 0.5, (batch, IMAGE_PIXELS)).astype(np.float32))
    y = tf.constant(rng.integers(0, NUM_CLASSES, batch).astype(np.int32))
    signature = [tf.TensorSpec([None, IMAGE_PIXELS], tf.float32), tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=signature)
    def forward(x, y, count):
        acc = tf.constant(0.0)
        for _ in tf.range(count):
            # `0 * acc` chains the iterations so none can be hoisted or skipped.
            acc += model_lib.loss_fn(model, x + 0.0 * acc, y)[0]
        return acc

    @tf.function(input_signature=signature)
    def train_step(x, y, count):
        acc = tf.constant(0.0)
        for _ in tf.range(count):
            acc += model_lib.train_step(model, optimizer, x + 0.0 * acc, y)[0]
        return acc

    return forward, train_step, x, y


def memory_device() -> str | None:
    """The device whose allocator TensorFlow reports on (GPU:0 if present, else CPU:0), or None."""
    import tensorflow as tf

    device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
    try:
        tf.config.experimental.get_memory_info(device)
    except (ValueError, tf.errors.OpError):
        return None
    return device


def peak_bytes(fn, x, y, device: str | None) -> int | None:
    """Peak bytes TensorFlow's allocator holds during one call, above what it held before."""
    import tensorflow as tf

    if device is None:
        return None
    one = tf.constant(1)
    float(fn(x, y, one))  # first-run allocations out of the way
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    float(fn(x, y, one))
    return tf.config.experimental.get_memory_info(device)["peak"] - before


# --------------------------------------------------------------------------- analytic


def analytic_bytes(layer_sizes, batch: int) -> dict[str, int]:
    """Bytes of the tensors a call creates (the weights exist before and are not counted).

    forward = the largest layer's input and output, alive at once;
    train_step = weight gradients + every activation kept for the backward pass
    (input, hidden outputs, logits) + the largest pair of activation gradients
    (the first layer needs no input gradient).
    """
    from dnn_tf.model import parameter_count

    s = list(layer_sizes)
    params = parameter_count(s)
    pairs = [s[i] + s[i + 1] for i in range(len(s) - 1)]
    grad_pairs = [s[i + 1] + (s[i] if i > 0 else 0) for i in range(len(s) - 1)]
    forward = batch * max(pairs)
    step = params + batch * sum(s) + batch * max(grad_pairs)
    return {"forward": FLOAT_BYTES * forward, "train_step": FLOAT_BYTES * step, "weights": FLOAT_BYTES * params}


# --------------------------------------------------------------------------- timing


def measure(net: str, hidden, batch: int, repeats: int) -> dict:
    """Time (interleaved rounds) and allocator peak of the forward pass and the training step."""
    import tensorflow as tf

    sizes = (IMAGE_PIXELS, *hidden, NUM_CLASSES)
    step_flop = common.flops_per_example(sizes) * batch
    iterations = max(1, int(round(TARGET_FLOP_PER_CALL / step_flop)))
    forward, train_step, x, y = build(hidden, batch)
    device = memory_device()
    memory = {"forward": peak_bytes(forward, x, y, device), "train_step": peak_bytes(train_step, x, y, device)}
    count = tf.constant(iterations)

    def timed(fn):
        def run() -> float:
            t0 = time.perf_counter()
            float(fn(x, y, count))
            return (time.perf_counter() - t0) / iterations
        return run

    common.log(f"time: {net} batch {batch}, {iterations} iterations per call, {repeats} rounds")
    times = common.interleave({"forward": timed(forward), "train_step": timed(train_step)}, repeats, warmup=1)
    fwd, step = common.median(times["forward"]), common.median(times["train_step"])
    return {"forward_s": fwd, "train_step_s": step, "iterations": iterations,
            "forward_spread": common.spread(times["forward"]), "train_step_spread": common.spread(times["train_step"]),
            "flop_ratio": common.flops_per_example(sizes) / common.flops_per_example(sizes, backward=False),
            "memory_device": device, "measured_forward_bytes": memory["forward"],
            "measured_train_step_bytes": memory["train_step"]}


# --------------------------------------------------------------------------- report


def _about(value: float, claim: float) -> str:
    """'about', 'more than' or 'less than' ``claim`` (within CLAIM_TOLERANCE counts as about)."""
    if abs(value / claim - 1.0) <= CLAIM_TOLERANCE:
        return "about"
    return "more than" if value > claim else "less than"


def _span(values) -> str:
    return f"{min(values):.2f}x" if max(values) - min(values) < 0.005 else f"{min(values):.2f}-{max(values):.2f}x"


def conclusion(rows) -> str:
    """One paragraph stating what the measurements say about the claim (numbers from ``rows``)."""
    parts = []
    for net in dict.fromkeys(r["net"] for r in rows):
        rs = [r for r in rows if r["net"] == net]
        t = common.median([r["time_ratio"] for r in rs])
        flop = rs[0]["flop_ratio"]
        measured = [r["measured_memory_ratio"] for r in rs if r["measured_memory_ratio"] is not None]
        total = [r["total_memory_ratio"] for r in rs]
        parts.append(
            f"For {net} a training step (forward + backward + update) took {_span([r['time_ratio'] for r in rs])} "
            f"the forward time over batches {rs[0]['batch']}-{rs[-1]['batch']} (median {t:.2f}x; FLOP count "
            f"{flop:.2f}x), so the backward pass alone costs {t - 1:.2f}x the forward pass, "
            f"{_about(t - 1, CLAIM_BACKWARD_RATIO)} the claimed 2x, and the whole step {_about(t, CLAIM_STEP_RATIO)} "
            f"twice the forward pass. Counting the weights both need, it holds {_span(total)} the tensor memory "
            f"of the forward pass ({_about(common.median(total), CLAIM_STEP_RATIO)} twice)"
            + (f"; the bytes it allocates beyond the weights are {_span(measured)} those of the forward pass "
               "(TensorFlow's allocator, batches where that is measurable)." if measured else "."))
    return (" ".join(parts) + " Why: the backward pass of a layer needs a weight gradient (as many FLOPs as the "
            "forward matmul) and an input gradient (as many again), except the first layer, which needs no input "
            "gradient; in 784-1024-10 that first layer holds almost all FLOPs, so backward ~ 1x forward there, and "
            "deeper nets move towards 2x. Memory: the training step keeps every activation for the backward pass and "
            "adds weight gradients as large as the weights, where inference only needs one layer's input and output "
            "at a time; the exact ratio depends on the batch size (weights dominate small batches, activations large "
            "ones). Timing ratios at small batches include per-op overheads; TensorFlow's CPU allocator does not "
            "report allocations under 256 KiB, so measured memory ratios are only given when the forward pass "
            f"allocates at least {MIN_MEASURED_BYTES // common.MIB} MiB.")


def render(result: dict) -> str:
    rows = [[r["net"], r["batch"], 1000 * r["forward_s"], 1000 * r["train_step_s"], r["time_ratio"], r["flop_ratio"],
             r["measured_forward_mib"], r["measured_train_step_mib"], r["measured_memory_ratio"],
             r["analytic_forward_mib"], r["analytic_train_step_mib"], r["analytic_ratio"], r["weights_mib"],
             r["total_memory_ratio"]] for r in result["rows"]]
    m = result["machine"]
    return "\n".join([
        "# Back-propagation cost: forward vs forward + backward + update",
        "",
        f"Machine: {m['cpus']} CPUs, load average {m['load_average_1min']:.2f} at start, "
        f"{result['machine_end']['load_average_1min']:.2f} at the end (shared; forward and training step are "
        f"interleaved, medians of {result['repeats']} rounds; times are per iteration, several iterations per "
        "compiled call).",
        f"Memory `measured` = {result['memory_method']}, after a first call; `analytic` = bytes of the "
        "tensors the call must create (training step: weight gradients, activations kept for the backward pass, "
        "the largest pair of activation gradients). The weights themselves exist before either call and are left "
        "out; `ratio incl. weights` adds them to both sides (measured where available).",
        "",
        common.markdown_table(["net", "batch", "fwd ms", "fwd+bwd+update ms", "time ratio", "FLOP ratio",
                               "measured fwd MiB", "measured step MiB", "measured ratio", "analytic fwd MiB",
                               "analytic step MiB", "analytic ratio", "weights MiB", "ratio incl. weights"], rows),
        "",
        "![ratios](backprop_cost.png)",
        "",
        "## Conclusion",
        "",
        result["conclusion"],
        "",
    ])


def plot(result: dict, path) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, net in enumerate(dict.fromkeys(r["net"] for r in result["rows"])):
        color = f"C{i}"
        rs = [r for r in result["rows"] if r["net"] == net]
        b = [r["batch"] for r in rs]
        axes[0].plot(b, [r["time_ratio"] for r in rs], "o-", color=color, label=f"{net} measured")
        axes[0].plot(b, [r["flop_ratio"] for r in rs], "--", color=color, label=f"{net} FLOP count")
        axes[1].plot(b, [r["analytic_total_ratio"] for r in rs], "o-", color=color, label=f"{net} analytic")
        mr = [(r["batch"], r["measured_total_ratio"]) for r in rs if r["measured_total_ratio"] is not None]
        if mr:
            axes[1].plot(*zip(*mr), "x:", color=color, ms=9, label=f"{net} measured (TF allocator)")
    for ax, what in zip(axes, ("time", "memory")):
        ax.axhline(CLAIM_STEP_RATIO, color="gray", lw=0.8)
        ax.axhline(1 + CLAIM_BACKWARD_RATIO, color="gray", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{what}: (forward + backward + update) / forward"
                      + (" (weights included)" if what == "memory" else ""))
        ax.legend(fontsize=7)
    axes[0].set_title("compute")
    axes[1].set_title("memory")
    common.save_figure(fig, path)


def main(argv=None) -> int:
    args = common.parser(PROG, __doc__.splitlines()[0]).parse_args(argv)
    nets = TINY_NETS if args.tiny else FULL_NETS
    batches = TINY_BATCHES if args.tiny else FULL_BATCHES
    repeats = common.repeats_of(args)
    start = time.perf_counter()
    machine = common.machine()
    rows = []
    for net, hidden in nets.items():
        sizes = (IMAGE_PIXELS, *hidden, NUM_CLASSES)
        for b in batches:
            t = measure(net, hidden, b, repeats)
            an = analytic_bytes(sizes, b)
            mf, ms = t["measured_forward_bytes"], t["measured_train_step_bytes"]
            rows.append({
                "net": net, "batch": b, **t, "time_ratio": t["train_step_s"] / t["forward_s"],
                "measured_forward_mib": None if mf is None else mf / common.MIB,
                "measured_train_step_mib": None if ms is None else ms / common.MIB,
                "measured_memory_ratio": ms / mf if mf and ms is not None and mf >= MIN_MEASURED_BYTES else None,
                "analytic_forward_mib": an["forward"] / common.MIB,
                "analytic_train_step_mib": an["train_step"] / common.MIB,
                "analytic_ratio": an["train_step"] / an["forward"],
                "weights_mib": an["weights"] / common.MIB,
                "total_memory_ratio": ((an["weights"] + (ms if ms is not None else an["train_step"]))
                                       / (an["weights"] + (mf if mf is not None else an["forward"]))),
                "analytic_total_ratio": (an["weights"] + an["train_step"]) / (an["weights"] + an["forward"]),
                "measured_total_ratio": ((an["weights"] + ms) / (an["weights"] + mf)
                                         if mf and ms is not None and mf >= MIN_MEASURED_BYTES else None)})
    device = rows[0]["memory_device"]
    result = {"benchmark": STEM, "machine": machine, "machine_end": common.machine(), "tiny": bool(args.tiny),
              "repeats": repeats, "rows": rows, "seconds": time.perf_counter() - start,
              "memory_method": (f"TensorFlow allocator peak bytes on {device} "
                                "(tf.config.experimental.get_memory_info, reset before the call)"
                                if device else "not available; analytic only")}
    result["conclusion"] = conclusion(rows)
    head = rows[min(1, len(rows) - 1)]
    result["key_lines"] = [
        f"backprop {r['net']} batch {r['batch']}: time x{r['time_ratio']:.2f} (FLOPs x{r['flop_ratio']:.2f}), "
        f"memory x{r['total_memory_ratio']:.2f} (incl. weights)"
        for r in rows if r["batch"] == head["batch"]]
    out = common.out_dir(args)
    png = os.path.join(out, f"{STEM}.png")
    plot(result, png)
    markdown = render(result)
    return common.publish(out, STEM, result, markdown)


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
