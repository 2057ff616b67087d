"""``python -m pipelines.run ablate``: the paper's Table V (ablation study) end to end.

``config`` (the YAML: a ``base`` training config, the variants as Table V experiments and/or
training-config overrides, the test data, metrics, executor) -> ``jobs`` (one independent job per
variant: train, fuse the test data, metrics, params/FLOPs; every stage cached in the run folder)
-> ``driver`` (runs the jobs through pipelines.executor, the only part talking to MLflow) ->
``report`` (Table V, ours beside the paper). Imports fusion (training, inference, metrics,
flops, paper values), data (config loader, tracker) and pipelines.executor / cache / reports.
"""
