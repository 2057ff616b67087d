"""Example fusion plug-ins for the ``python`` method kind (``tests.plugins``; tests/ is on sys.path,
so their targets are ``plugins.my_fusion:brightest`` ...). README "Bring your own method" shows the
first one."""

import numpy as np


def brightest(ir, vi):
    """The brighter of IR and the VIS gray level, pixel by pixel (a colour VIS keeps its colour where it wins)."""
    gray = vi if vi.ndim == 2 else vi.mean(axis=2).astype(np.uint8)
    if vi.ndim == 2:
        return np.maximum(ir, vi)
    return np.where((ir > gray)[..., None], ir[..., None], vi).astype(np.uint8)


class Blend:
    """A class target: instantiated without arguments, ``setup(device)`` called once, then ``__call__``."""

    device = None

    def setup(self, device):
        Blend.device = device  # recorded on the class: the test reads which device it was given
        self.weight = 0.5

    def __call__(self, ir, vi):
        gray = vi if vi.ndim == 2 else vi.mean(axis=2)
        return np.rint(self.weight * ir + (1 - self.weight) * gray).astype(np.uint8)


def float_output(ir, vi):
    """Wrong on purpose: float64, not uint8."""
    return ir / 255.0


def half_size(ir, vi):
    """Wrong on purpose: half the pair's size."""
    return ir[::2, ::2]


NOT_CALLABLE = 42
