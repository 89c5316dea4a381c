"""Training: PivhNet (network.py), data in memory (data.py), augmentation
(augment.py), JSON config (config.py), the loop (train.py) and ONNX bundle
export (export.py). Needs the ``train`` extra (torch); nothing here is
imported by the live pipeline. See docs/training.md.
"""
