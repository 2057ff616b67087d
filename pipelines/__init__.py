"""Pipelines: the command line (`python -m pipelines.run <command>`), its stages, MLflow tracking
and reports. The top of the import graph: may import detection/, fusion/ and data/; nothing
imports pipelines/.
"""
