"""dnn_tf: the notMNIST deep-neural-network assignments in TensorFlow 2.

Data flows one way:
archive -> arrays (``archive``, ``data``) -> pickle -> tensors -> model (``model``)
-> metrics (``train``) -> report (``report``).
"""

__version__ = "0.1.0"
