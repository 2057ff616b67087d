"""detection: ultralytics YOLO wrapper (offline, deterministic), evaluation and COCO cross-check.
May import data/; never fusion/ or pipelines/.
"""
