"""Detection class names. The M3FD class ids are frozen HERE and nowhere else.

Papers list M3FD's six classes in different orders; we fix the order below once, use class
NAMES in every annotation file we read or write, and derive ids only through this module.
"""

from __future__ import annotations

from collections.abc import Sequence

M3FD_CLASSES: tuple[str, ...] = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
LLVIP_CLASSES: tuple[str, ...] = ("person",)


def class_id(name: str, classes: Sequence[str] = M3FD_CLASSES) -> int:
    """Index of class ``name`` in ``classes`` (exact, case-sensitive match)."""
    try:
        return list(classes).index(name)
    except ValueError:
        raise KeyError(f"unknown class name {name!r}; expected one of {list(classes)}") from None
