"""runtime.hooks: the callbacks registry of the trainer's events and the pipeline stages' hook points."""

from types import SimpleNamespace

import pytest

from runtime import hooks


def test_callbacks_fire_in_order_and_refuse_unknown_events():
    calls = []
    callbacks = hooks.Callbacks(["on_a", "on_b"])
    callbacks.add("on_a", lambda x: calls.append(("first", x)))
    callbacks.add("on_a", lambda x: calls.append(("second", x)))
    callbacks.fire("on_a", 1)
    callbacks.fire("on_b", 2)  # nothing subscribed: nothing happens
    assert calls == [("first", 1), ("second", 1)]
    with pytest.raises(ValueError, match="unknown event 'on_c'"):
        callbacks.add("on_c", print)  # a typo would otherwise subscribe to an event that never fires


def test_a_handler_subscribes_its_methods_named_like_events():
    seen = []
    handler = SimpleNamespace(on_a=lambda: seen.append("a"), other=lambda: seen.append("other"))
    callbacks = hooks.Callbacks(["on_a", "on_b"])
    assert callbacks.add_handler(handler) == ["on_a"]
    callbacks.fire("on_a")
    callbacks.fire("on_b")
    assert seen == ["a"]


def test_process_hook_points_reach_subscribers_until_unsubscribed():
    seen = []
    with hooks.subscribed("test.point", lambda *args: seen.append(args)):
        hooks.fire("test.point", "k", 1)
    hooks.fire("test.point", "k", 2)  # unsubscribed
    assert seen == [("k", 1)]
    assert hooks.process_hooks.callbacks("test.point") == []
