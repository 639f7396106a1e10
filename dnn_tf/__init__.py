"""dnn_tf: the notMNIST deep-neural-network assignments of the classic deep-learning course in TensorFlow 2.

The course's model, its loss and its ``tf.GradientTape`` training step are ``dnn_tf/model.py``.
Around it, data flows one way:

    data/       archive -> arrays -> pickle   (download, decode, split, ``notMNIST.pickle``; no TensorFlow)
    training/   pickle -> tensors -> model -> metrics   (presets, inputs, the loop, tf.distribute, checkpoints)
    report/     metrics -> tables and plots   (``results/``)
    cli/        the four commands

``docs/README.md`` maps every module.
"""

__version__ = "0.3.0"
