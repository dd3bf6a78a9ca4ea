"""The cyclic-GC pause: off inside, restored after, nesting-safe (a pass inside a command's pause)."""

from __future__ import annotations

import gc

import pytest

from reconciler.gcpause import cyclic_gc_paused


def test_paused_inside_restored_after_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a pass that fails")
    assert gc.isenabled()


def test_nested_pause_leaves_the_outer_one_in_force() -> None:
    with cyclic_gc_paused():
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner exit must not switch it back on
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
