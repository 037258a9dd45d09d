"""Fine-tuning RSCoVLM-style detectors: build a training set from labelled imagery, then train.

``prepare`` turns a DOTA folder or a raster + vector layer into model-ready tiles and
conversations; ``train`` fine-tunes a Qwen2.5-VL model on them with the Hugging Face
Trainer. Heavy dependencies (torch, transformers, peft) are imported only by the
modules that train.
"""
