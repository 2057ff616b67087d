"""data: the bottom floor. Dataset adapters, image I/O (atomic writes, content hashes, the
precomputed-folder index) and the colour policy, validation, splits, synthetic data, paired
transforms, YOLO export -- plus what every command shares and therefore lives on this floor: the
typed config loader (``config``), the MLflow tracker (``tracking``), the typed input errors
(``errors``) and where the shipped profiles are (``experiments``).

Imports nothing from fusion/, detection/ or pipelines/.
"""
