"""The data: archive -> arrays -> pickle (``dnn-tf-prepare``), without TensorFlow.

``download`` fetches the course's archives, ``archive`` and ``tar_stream`` read their members
safely, ``png`` and ``decode`` turn them into 28x28 arrays, ``class_pickles`` keeps the
course's per-class pickles, ``splits`` draws balanced train/valid/test, ``duplicates`` counts
overlaps, ``prepare`` writes ``notMNIST.pickle``; ``dataset`` and ``safe_pickle`` read it back.
"""
