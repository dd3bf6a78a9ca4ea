"""``python -m reconciler`` and the ``reconciler`` console script.

The cyclic garbage collector is paused *before* the CLI is imported: importing it (typer, pydantic,
the kubernetes client) allocates enough objects to trigger collections worth ~35 ms of CPU, on
every pass a CronJob runs, for nothing a one-shot command would ever free. ``commands/app.main``
keeps it off for the command itself (and says why); ``serve`` switches it back on. Large buffers
are returned to the system when freed (:mod:`reconciler.malloc`), set before anything is read.
Once the command is done, the process ends without the interpreter's teardown (:func:`exit_now`).
"""

import atexit
import contextlib
import gc
import os
import sys
from typing import NoReturn

from reconciler.malloc import return_large_buffers


def main() -> None:
    gc.disable()
    return_large_buffers()
    from reconciler.commands.app import main as run

    try:
        run()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def exit_now(code: object) -> NoReturn:
    """End the process as ``sys.exit(code)`` would, without the interpreter's teardown.

    Python's finalisation frees every object a pass made and ~770 modules one by one (with the
    cyclic collector paused for the run, after one full collection of them all): ~90 ms of every
    pass, after its last line was printed and while its scheduler waits. What a process must do on
    the way out still happens, in the same order: the ``atexit`` handlers run (the kubernetes client
    deletes the certificate files it wrote from a kubeconfig's inline data; logging flushes), then
    stdout and stderr are flushed. An exception that escapes a command is not handled here: it
    exits the usual way.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:  # sys.exit("message"): printed, exit 1
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`| head`) must not change the status
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
