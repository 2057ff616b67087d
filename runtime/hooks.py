"""Callbacks: named events, each with a list of callables fired in the order they were added.

Two uses share the one :class:`Callbacks` class:

* an object's own events, e.g. the S4Fusion trainer's ``on_step_end`` (docs/training.md): whoever
  runs the trainer adds the callbacks it needs (MLflow logging is one);
* the process-wide hook points of the pipeline stages, :data:`process_hooks`, which production code
  fires by name with :func:`fire` and nothing else: ``fuse.image`` (a fused image written),
  ``yolo.export`` (a YOLO tree written, not yet committed), ``detector.batch`` (inside ultralytics'
  training loop), ``job.start`` (an executor job about to run, with its key) and ``train.<event>``
  (every trainer event, with the trainer). Tests subscribe to them (a SIGKILL at a named moment, an
  injected job fault: docs/testing.md); nothing subscribes in a normal run, where a fire costs one
  dictionary lookup.

Production code never reads a test switch: what happens at a hook point is decided by whoever
subscribed, in the process that fires it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

Callback = Callable[..., Any]


class Callbacks:
    """Event name -> callables. With ``events`` given, an unknown event name is refused (a typo would
    otherwise subscribe to an event that never fires)."""

    def __init__(self, events: Iterable[str] | None = None) -> None:
        self.events: frozenset[str] | None = frozenset(events) if events is not None else None
        self._by_event: dict[str, list[Callback]] = {}

    def _check(self, event: str) -> None:
        if self.events is not None and event not in self.events:
            raise ValueError(f"unknown event {event!r}; known: {sorted(self.events)}")

    def add(self, event: str, fn: Callback) -> None:
        self._check(event)
        self._by_event.setdefault(event, []).append(fn)

    def remove(self, event: str, fn: Callback) -> None:
        """Remove one registration of ``fn`` (no error when it is not there)."""
        registered = self._by_event.get(event, [])
        if fn in registered:
            registered.remove(fn)

    def add_handler(self, handler: object) -> list[str]:
        """Add every method of ``handler`` named like an event (``on_step_end``...): a callback class
        such as the trainer's MLflow logger. Returns the events it subscribed to."""
        if self.events is None:
            raise TypeError("add_handler needs a Callbacks with a fixed list of events")
        subscribed = sorted(e for e in self.events if callable(getattr(handler, e, None)))
        for event in subscribed:
            self.add(event, getattr(handler, event))
        return subscribed

    def callbacks(self, event: str) -> list[Callback]:
        return list(self._by_event.get(event, ()))

    def fire(self, event: str, *args: Any, **kwargs: Any) -> None:
        self._check(event)
        for fn in self._by_event.get(event, ()):
            fn(*args, **kwargs)


process_hooks = Callbacks()  # open-ended names: see the module docstring for the points fired


def fire(point: str, *args: Any, **kwargs: Any) -> None:
    """Fire the process-wide hook point ``point``."""
    process_hooks.fire(point, *args, **kwargs)


def subscribe(point: str, fn: Callback) -> Callable[[], None]:
    """Run ``fn`` whenever ``point`` fires in this process; returns the function that unsubscribes it."""
    process_hooks.add(point, fn)
    return lambda: process_hooks.remove(point, fn)


@contextmanager
def subscribed(point: str, fn: Callback) -> Iterator[None]:
    """:func:`subscribe` for the duration of a ``with`` block."""
    unsubscribe = subscribe(point, fn)
    try:
        yield
    finally:
        unsubscribe()
