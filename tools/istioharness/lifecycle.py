"""One lifecycle for the harness's processes: a context manager around a ``ManagedProcess``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from kubeharness.process import ManagedProcess


class ProcessBacked:
    """``start``/``stop`` and ``with`` for a class whose ``_process`` is a :class:`ManagedProcess`.

    Subclasses override :meth:`start` to wait for readiness after ``super().start()``.
    """

    _process: ManagedProcess
    stop_timeout = 10.0

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._process.stop(timeout=self.stop_timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
