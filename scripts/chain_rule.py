"""Prints hand-written back-propagation (numpy, chain rule) next to tf.GradientTape's gradients.

    python scripts/chain_rule.py [--hidden 16,8] [--batch 32] [--beta 1e-3] [--seed 0]

The course: a network of ReLU and linear layers is trained by computing derivatives with the
chain rule. Here both computations run on the same MLP and batch; every row shows a parameter,
a few of its gradient entries from each, and the largest difference.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from dnn_tf.cli import ArgumentParser, run

PROG = "chain_rule"


def body(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="16,8", help="hidden layer sizes (default 16,8)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beta", type=float, default=1e-3, help="L2 weight")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    if args.batch <= 0:
        raise ValueError("--batch must be > 0")

    import tensorflow as tf

    from dnn_tf.model import MLP, loss_fn
    from dnn_tf.reference.backprop import numpy_backprop

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-0.5, 0.5, (args.batch, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int32)
    model = MLP(hidden, init="he", seed=args.seed)
    with tf.GradientTape() as tape:
        loss, _ = loss_fn(model, x, y, l2_beta=args.beta)
    params = model.weights + model.biases
    tape_grads = [g.numpy() for g in tape.gradient(loss, params)]
    ref_loss, dws, dbs = numpy_backprop([w.numpy() for w in model.weights],
                                        [b.numpy() for b in model.biases], x, y, args.beta)
    print(f"loss: GradientTape {float(loss):.7f}   chain rule (numpy) {ref_loss:.7f}")
    print(f"{'parameter':<12} {'shape':<12} {'GradientTape[:3]':<36} {'chain rule[:3]':<36} max|diff|")
    names = [f"W{i}" for i in range(len(dws))] + [f"b{i}" for i in range(len(dbs))]
    for name, got, ref in zip(names, tape_grads, dws + dbs):
        flat_g, flat_r = got.ravel()[:3], ref.ravel()[:3]
        print(f"{name:<12} {str(got.shape):<12} {np.array2string(flat_g, precision=6):<36} "
              f"{np.array2string(flat_r, precision=6):<36} {np.max(np.abs(got - ref)):.2e}")
    z = tf.constant([-2.0, -0.5, 0.5, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(z)
        r = tf.nn.relu(z)
    print(f"ReLU derivative at {z.numpy()}: {tape.gradient(r, z).numpy()} (0 for z < 0, 1 for z > 0)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
