"""Building blocks of S4Fusion: patch embed/merge/expand and the fold head (`patch`), the VSS
block with its 2D selective scan (`ss2d`), the CMSA cross-modal block (`cmsa`) and the Table V
ablation interactions (`interactions`). May import fusion.ops; never the assembled model.
"""

from fusion.modules.cmsa import CrossSS2D, FusionLayer
from fusion.modules.interactions import INTERACTIONS, build_interaction
from fusion.modules.patch import FoldHead, OverlapPatchEmbed, PatchExpand, PatchMerging
from fusion.modules.ss2d import SS2D, VSSBlock, VSSLayer

__all__ = [
    "CrossSS2D",
    "FusionLayer",
    "INTERACTIONS",
    "build_interaction",
    "FoldHead",
    "OverlapPatchEmbed",
    "PatchExpand",
    "PatchMerging",
    "SS2D",
    "VSSBlock",
    "VSSLayer",
]
