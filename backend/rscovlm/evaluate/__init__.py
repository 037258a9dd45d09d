"""Evaluation of oriented detections (DOTA Task 1) under named conventions.

objects (data model) -> overlap (IoU, min-area rectangles) -> matching (who found what)
-> ap (AP from a ranking) -> metrics (conventions, mAP_nc, P/R/F1); loaders and report
are the file edges. Nothing is imported here so ``rscovlm --help`` stays fast.
"""
