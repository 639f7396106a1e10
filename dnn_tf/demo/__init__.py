"""The draw-a-letter page: a trained run's network in a static web page that runs it itself.

``page.build_page`` (``dnn-tf-demo``) exports a run's weights from its SavedModel
(``export``) and writes ``index.html`` with the page's own JavaScript next to them
(``static/``). ``node`` runs that JavaScript outside a browser and ``browser`` starts
headless Chromium on it: the tests and the measurement scripts check the page with them.
"""
