"""fusion: the S4Fusion model and everything around it.

``ops`` (selective-scan backends, cross-scan) -> ``modules`` (SS2D/VSS, CMSA, patch layers,
ablation interactions) -> ``model`` (S4Fusion, config, official checkpoints); ``inference``,
``flops``, ``losses``, ``train`` (package), ``analysis`` (Table VIII, Fig. 13), ``mlflow_model`` (a trained
model as an MLflow pyfunc) build on them; ``paper``
hands out the paper's printed values (``paper_s4fusion.yaml``); ``methods`` (the FusionMethod
interface and registry of every method kind) imports torch only when a model fuses; ``baselines``,
``metrics`` and ``shipped_weights`` (shipped checkpoint names) import without torch (the model is exposed lazily below). May import data/
and runtime/;
never detection/ or pipelines/.
"""

import os
import sys

if "torch" not in sys.modules:
    # torch's OpenMP threads otherwise spin for milliseconds after every op and starve the numba
    # scan kernel's threads (and anything else running): measured 30x slower CPU training steps
    # on 2 cores. Only effective before torch is imported; entry points set it too.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["S4Fusion", "S4FusionConfig"]


def __getattr__(name: str):
    """``fusion.S4Fusion`` / ``fusion.S4FusionConfig`` import torch only when first used, so that
    ``import fusion.metrics`` and ``import fusion.baselines`` stay torch-free."""
    if name in __all__:
        from fusion import model

        return getattr(model, name)
    raise AttributeError(f"module 'fusion' has no attribute {name!r}")
