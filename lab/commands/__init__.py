"""The project's own commands, one module or package each, named as the command:
``lab summary``, ``compare``, ``record``, ``report``, ``sweep``, ``svm``, ``bench``.

Each has a ``main(argv)``; ``lab.cli.PROJECT_COMMANDS`` maps the command to it.
"""
