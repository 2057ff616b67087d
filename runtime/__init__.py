"""runtime: what every command runs on, free of any domain knowledge. The typed config loader
(``config_loader``), the typed input errors (``errors``), the MLflow tracker (``tracking``) and where the
shipped YAML profiles are (``profiles``).

The bottom floor: imports nothing from data/, fusion/, detection/ or pipelines/.
"""
