"""The application layer: what the commands do, as Python functions.

One module per command (:mod:`~flatscope.app.analyze`, :mod:`~flatscope.app.verify`,
:mod:`~flatscope.app.compare`, :mod:`~flatscope.app.trajectory`, :mod:`~flatscope.app.demo`);
they compose operators, estimators, metrics and reports, and the CLI only parses arguments and
calls them. The functions are exported at the package top (``fs.analyze``, ``fs.verify``, ...).
"""
