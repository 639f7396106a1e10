"""The course's own TensorFlow 1 training loop (ud730, assignments 2 and 3), kept as a reference.

What the course's notebooks wrote, in ``tf.compat.v1``: a ``tf.Graph`` with placeholders
for each minibatch (or the whole training subset as a constant, for gradient descent),
``tf.Variable(tf.truncated_normal(...))`` weights and zero biases, ReLU hidden layers, the
dense softmax cross-entropy on one-hot labels, ``GradientDescentOptimizer(...).minimize``,
and a ``session.run`` with a ``feed_dict`` per step at the course's offset into the data.
The graph is a ``tf.Graph`` of its own, so the caller stays eager.

Two users: tests/test_course_reference.py checks that our training step logs the same losses
from the same weights, and benchmarks/train_contenders.py times the loop against ours::

    with CourseTF1(images, labels, hidden_sizes=(1024,), batch_size=128, init=init) as course:
        losses = course.train(3001)

The course's validation and test predictions and its accuracy printouts are left out: neither
user needs them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from dnn_tf.notmnist import IMAGE_PIXELS, NUM_CLASSES

LEARNING_RATE = 0.5  # assignment 2's, for gradient descent and SGD alike
BATCH_SIZE = 128  # assignment 2's SGD minibatch

v1 = tf.compat.v1


def reformat(dataset: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The course's ``reformat``: images flattened to rows of 784 floats, labels one-hot."""
    dataset = np.asarray(dataset).reshape((-1, IMAGE_PIXELS)).astype(np.float32)
    labels = (np.arange(NUM_CLASSES) == np.asarray(labels)[:, None]).astype(np.float32)
    return dataset, labels


class CourseTF1:
    """The course's graph and session, trained one ``session.run`` per step.

    Args:
      images: ``(n, 28, 28)`` (or ``(n, 784)``) float32 training images.
      labels: ``(n,)`` int class indices (made one-hot, as the course's ``reformat`` did).
      hidden_sizes: widths of the ReLU hidden layers (``()``: logistic regression).
      batch_size: the SGD minibatch, or None for full-batch gradient descent on all of ``images``
        (the course's gradient descent took the first 10,000: slice them before).
      learning_rate: ``GradientDescentOptimizer``'s rate.
      init: ``(weights, biases)`` arrays per layer to start from; None: the course's own init,
        ``tf.truncated_normal`` weights of stddev 1 and zero biases.

    The step count carries over between ``train`` calls (and so does the offset into the data),
    so a benchmark can warm up with one call and time the next. Close the session with ``close``
    or a ``with`` block.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, hidden_sizes: Sequence[int] = (),
                 batch_size: int | None = BATCH_SIZE, learning_rate: float = LEARNING_RATE,
                 init: Sequence[tuple[np.ndarray, np.ndarray]] | None = None):
        self.train_dataset, self.train_labels = reformat(images, labels)
        self.batch_size = batch_size
        sizes = (IMAGE_PIXELS, *hidden_sizes, NUM_CLASSES)
        shapes = list(zip(sizes[:-1], sizes[1:]))
        if init is not None and [np.shape(w) for w, _ in init] != shapes:
            raise ValueError(f"init has weights of shapes {[np.shape(w) for w, _ in init]}, the net needs {shapes}")
        if batch_size is not None and not 0 < batch_size < len(self.train_labels):
            raise ValueError(f"batch_size must be in 1..{len(self.train_labels) - 1} (the offset wraps at "
                             f"n - batch_size), got {batch_size}")

        graph = tf.Graph()
        with graph.as_default():
            # Input data. For the training data, we use a placeholder that will be fed at run time
            # with a training minibatch (gradient descent: the whole subset, a constant).
            if batch_size is None:
                self.tf_train_dataset = tf.constant(self.train_dataset)
                self.tf_train_labels = tf.constant(self.train_labels)
            else:
                self.tf_train_dataset = v1.placeholder(tf.float32, shape=(batch_size, IMAGE_PIXELS))
                self.tf_train_labels = v1.placeholder(tf.float32, shape=(batch_size, NUM_CLASSES))

            # Variables, and the training computation: ReLU hidden layers, then the logits.
            logits = self.tf_train_dataset
            for i, (fan_in, fan_out) in enumerate(shapes):
                if i:
                    logits = tf.nn.relu(logits)
                if init is None:
                    weights = tf.Variable(v1.truncated_normal([fan_in, fan_out]))
                    biases = tf.Variable(tf.zeros([fan_out]))
                else:
                    weights = tf.Variable(np.asarray(init[i][0], np.float32))
                    biases = tf.Variable(np.asarray(init[i][1], np.float32))
                logits = tf.matmul(logits, weights) + biases
            self.loss = tf.reduce_mean(
                tf.nn.softmax_cross_entropy_with_logits(labels=self.tf_train_labels, logits=logits))

            # Optimizer.
            self.optimizer = v1.train.GradientDescentOptimizer(learning_rate).minimize(self.loss)

            # Predictions for the training data.
            self.train_prediction = tf.nn.softmax(logits)
            initializer = v1.global_variables_initializer()
        self.session = v1.Session(graph=graph)
        self.session.run(initializer)
        self.step = 0

    def train(self, num_steps: int) -> np.ndarray:
        """Runs ``num_steps`` optimizer steps; returns each step's loss on its batch (before its update)."""
        losses = []
        for _ in range(num_steps):
            if self.batch_size is None:
                _, l, predictions = self.session.run([self.optimizer, self.loss, self.train_prediction])  # noqa: E741
            else:
                # Pick an offset within the training data, which has been randomized.
                offset = (self.step * self.batch_size) % (self.train_labels.shape[0] - self.batch_size)
                # Generate a minibatch.
                batch_data = self.train_dataset[offset:(offset + self.batch_size), :]
                batch_labels = self.train_labels[offset:(offset + self.batch_size), :]
                # Prepare a dictionary telling the session where to feed the minibatch.
                feed_dict = {self.tf_train_dataset: batch_data, self.tf_train_labels: batch_labels}
                _, l, predictions = self.session.run(  # noqa: E741 - the course's names
                    [self.optimizer, self.loss, self.train_prediction], feed_dict=feed_dict)
            losses.append(l)
            self.step += 1
        return np.asarray(losses, np.float32)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> CourseTF1:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
