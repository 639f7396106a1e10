"""Training around ``dnn_tf.model.train_step``: pickle -> tensors -> model -> metrics.

``config`` and ``presets`` say what a run learns and how it runs; ``inputs`` and ``augment``
make each step's minibatch on the device; ``optimizers`` update the weights; ``loop`` compiles
the step and runs it (``train_and_evaluate``), on the devices ``distribute`` chooses, with
``checkpoints``, the ``run_dir`` and Ctrl-C handling (``interrupt``); ``inference`` exports,
loads and applies a trained model.
"""
