"""Pipelines: the command line (``python -m pipelines.run <command>``), one module per command
(``fuse``, ``check_data``, ``train_fusion``, ``evaluate``, and the ``fuse_then_detect`` package:
types / stages / orchestration / report / cli), the shared error policy and ``--set`` option
(``cli_common``), the pipeline config (``config``), the cached fusion-metric stage (``fusion_metrics``)
and report helpers (``reports``). The top of the import graph: may import detection/, fusion/,
data/ and runtime/; nothing imports pipelines/.
"""
