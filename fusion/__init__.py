"""fusion: the S4Fusion model and everything around it.

``ops`` (selective-scan backends, cross-scan) -> ``modules`` (SS2D/VSS, CMSA, patch layers,
ablation interactions) -> ``model`` (S4Fusion, config, official checkpoints); ``inference``,
``flops``, ``losses``, ``train``, ``baselines`` and ``metrics`` build on them. May import data/;
never detection/ or pipelines/.
"""
from fusion.model import S4Fusion, S4FusionConfig

__all__ = ["S4Fusion", "S4FusionConfig"]
