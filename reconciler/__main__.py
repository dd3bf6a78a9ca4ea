"""``python -m reconciler`` and the ``reconciler`` console script.

The cyclic garbage collector is paused *before* the CLI is imported: importing it (typer, pydantic,
the kubernetes client) allocates enough objects to trigger collections worth ~35 ms of CPU, on
every pass a CronJob runs, for nothing a one-shot command would ever free. ``commands/app.main``
keeps it off for the command itself (and says why); ``serve`` switches it back on. Large buffers
are returned to the system when freed (:mod:`reconciler.malloc`), set before anything is read.
"""

import gc

from reconciler.malloc import return_large_buffers


def main() -> None:
    gc.disable()
    return_large_buffers()
    from reconciler.commands.app import main as run

    run()


if __name__ == "__main__":
    main()
