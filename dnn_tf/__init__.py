"""dnn_tf: the notMNIST deep-neural-network assignments in TensorFlow 2.

Data flows one way, one module per step (docs/README has the map):
archive (``archive``, ``png``, ``decode``) -> arrays -> pickle (``prepare``, ``dataset``)
-> tensors (``inputs``) -> model (``model``) -> metrics (``train``) -> report (``report``, ``results``).
"""

__version__ = "0.2.0"
