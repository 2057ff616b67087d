"""detection: ultralytics YOLO wrapper (offline, deterministic), evaluation and COCO cross-check.
May import data/ and runtime/; never fusion/ or pipelines/.
"""
