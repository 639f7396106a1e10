"""Other ways to compute what dnn_tf computes, kept to check it and to compare with it.

``course_tf1`` (the course's own TensorFlow 1 loop), ``keras_mlp`` (the same net in plain
Keras ``model.fit``), ``scipy_logreg`` (the course's off-the-shelf logistic regression
baseline) and ``backprop`` (the chain rule by hand, in numpy).
"""
