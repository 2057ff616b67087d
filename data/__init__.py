"""data: dataset adapters, image I/O and color, validation, splits, synthetic data, paired transforms, YOLO export. Imports nothing from fusion/, detection/ or pipelines/."""
