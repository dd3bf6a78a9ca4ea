"""The `serve` worker's own bookkeeping: a crashing pass is counted and the worker stays up; a pass
abandoned at shutdown stops writing and is never reported as a success.

The passes here are fakes (``fake_*``): a bug and a hung pass cannot be produced on purpose with the
real pipeline; the real worker against real API servers is in tests/integration/test_serve.py.
"""

from __future__ import annotations

import gc
import threading
import time

from prometheus_client import generate_latest

from reconciler.errors import ExitCode
from reconciler.reconcile import ReconcileOutcome
from reconciler.serve import Worker, serve
from reconciler.settings import Settings


def runs(worker: Worker, result: str) -> float:
    value = worker.metrics.registry.get_sample_value("mesh_reconciler_runs_total", {"result": result})
    return value or 0.0


def test_a_crashing_pass_is_counted_as_fatal_and_the_worker_stays_up() -> None:
    calls: list[int] = []

    def fake_crashing_pass(settings: Settings, cancel: threading.Event) -> ReconcileOutcome:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("fake bug")
        return ReconcileOutcome(ExitCode.OK)

    worker = Worker(Settings(), run=fake_crashing_pass)
    worker.run_pass()  # must not raise
    worker.run_pass()
    assert runs(worker, "fatal") == 1
    assert runs(worker, "converged") == 1
    assert worker.ready() == (True, "ok")
    assert b'mesh_reconciler_runs_total{result="fatal"} 1.0' in generate_latest(worker.metrics.registry)


def test_a_pass_abandoned_at_shutdown_is_cancelled_and_not_a_success() -> None:
    started = threading.Event()
    saw_cancel = threading.Event()

    def fake_hung_pass(settings: Settings, cancel: threading.Event) -> ReconcileOutcome:
        started.set()
        # A real pass checks ``cancel`` before every write; this one just waits for it (bounded).
        if cancel.wait(timeout=10):
            saw_cancel.set()
        return ReconcileOutcome(ExitCode.OK)  # what a pass that ignored the cancel would claim

    worker = Worker(Settings(), run=fake_hung_pass)
    stop = threading.Event()
    # serve() installs signal handlers, so it runs in the main thread; a helper stops it.
    stopper = threading.Thread(target=lambda: started.wait(timeout=10) and stop.set())
    stopper.start()
    code = [serve(worker, interval=3600, cron=None, port=0, shutdown_grace=0.2, stop=stop)]
    stopper.join(timeout=5)
    assert started.is_set()
    assert code == [1]  # the process says the last pass did not finish
    assert saw_cancel.wait(timeout=5)
    deadline = time.monotonic() + 5
    while worker.last is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.last is not None and worker.last.exit_code == ExitCode.FATAL
    assert "abandoned" in worker.last.error
    assert runs(worker, "abandoned") == 1 and runs(worker, "converged") == 0


def test_a_pass_runs_with_the_cyclic_gc_paused_and_the_worker_collects_between_passes() -> None:
    during: list[bool] = []

    def fake_recording_pass(settings: Settings, cancel: threading.Event) -> ReconcileOutcome:
        during.append(gc.isenabled())
        return ReconcileOutcome(ExitCode.OK)

    worker = Worker(Settings(), run=fake_recording_pass)
    worker.run_pass()
    worker.run_pass()
    assert during == [False, False]
    assert gc.isenabled()  # between passes a long-running worker collects cycles
