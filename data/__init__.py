"""data: the datasets and their IO. Dataset adapters, image I/O (atomic writes, content hashes, the
precomputed-folder index) and the colour policy, the dataset check (``dataset_check``), splits,
synthetic data (and its preview grid), paired transforms, YOLO export.

May import runtime/; nothing from fusion/, detection/ or pipelines/.
"""
