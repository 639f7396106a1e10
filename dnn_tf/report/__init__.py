"""The end of the data flow: results tables (``tables``), figures (``plots``) and the
``results/`` folder of ``dnn-tf-reproduce`` (``results_dir``). Nothing here trains."""
