"""The command line: ``tripduration COMMAND ...`` (the console script) = ``python pipeline.py COMMAND ...``.

``parser`` declares every command and option, ``values`` their checked types, ``jobs`` the luigi jobs and
``status``, ``invalidate`` its per-task parser and the mark, ``registry`` serve/models/rollback/export-mlflow,
``main`` the dispatch and the exit codes of refusals. Import it through ``pipeline`` (the console script
does): pipeline.py prepares the process and reads this project's luigi.cfg before any task is imported.
"""
