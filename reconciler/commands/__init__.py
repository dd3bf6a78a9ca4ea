"""The ``reconciler`` command line: thin commands that wire the pipeline stages together.

``app`` holds the typer application and ``main``; one module per command family (``validate``,
``render``, ``envoy_config``, ``snapshot``, ``sync``, ``config``); ``options`` declares every option
once and turns them into :class:`reconciler.settings.Settings`; ``common`` is what every command does
the same way (open the plan, fail with one line). Printing is :mod:`reconciler.output`'s; exit codes
are :class:`reconciler.errors.ExitCode`. Only this package imports typer.
"""
