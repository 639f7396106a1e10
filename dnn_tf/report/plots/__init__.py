"""Figures for the report and the notebooks: data, training curves, weights, errors.

Every ``*_figure(...)`` checks its inputs (ValueError before anything is drawn) and
returns a ``matplotlib.figure.Figure`` (a notebook displays it); ``save_figure(fig,
path)`` writes it as a PNG atomically. Figures use the Agg canvas directly, never
``pyplot``, so importing this changes no global backend (headless machines, notebooks).
"""

from dnn_tf.report.plots._common import save_figure
from dnn_tf.report.plots.data import class_balance_figure, sample_grid_figure
from dnn_tf.report.plots.errors import (
                                 confident_mistakes_figure,
                                 confusion_counts,
                                 confusion_matrix_figure,
                                 most_confident_mistakes,
)
from dnn_tf.report.plots.training import accuracy_vs_params_figure, learning_curves_figure
from dnn_tf.report.plots.weights import hidden_units_figure, strongest_units, templates_figure

__all__ = ["accuracy_vs_params_figure", "class_balance_figure", "confident_mistakes_figure", "confusion_counts",
           "confusion_matrix_figure", "learning_curves_figure", "most_confident_mistakes", "sample_grid_figure",
           "hidden_units_figure", "save_figure", "strongest_units", "templates_figure"]
