"""fusion: the S4Fusion model and everything around it.

``ops`` (selective-scan backends, cross-scan) -> ``modules`` (SS2D/VSS, CMSA, patch layers,
ablation interactions) -> ``model`` (S4Fusion, config, official checkpoints); ``inference``,
``flops``, ``losses``, ``train``, ``baselines``, ``metrics`` and ``analysis`` (Table VIII, Fig. 13)
build on them; ``paper`` hands out the paper's printed values (``paper_s4fusion.yaml``). May import data/;
never detection/ or pipelines/.
"""
import os
import sys

if "torch" not in sys.modules:
    # torch's OpenMP threads otherwise spin for milliseconds after every op and starve the numba
    # scan kernel's threads (and anything else running): measured 30x slower CPU training steps
    # on 2 cores. Only effective before torch is imported; entry points set it too.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fusion.model import S4Fusion, S4FusionConfig  # noqa: E402

__all__ = ["S4Fusion", "S4FusionConfig"]
