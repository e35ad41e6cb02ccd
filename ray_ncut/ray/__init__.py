"""The Ray wing: the only package in ray_ncut that imports ray.

dataset.py  --data URI -> Ray Data, streaming scaling statistics, training sample
train.py    TorchTrainer wiring around ray_ncut.engine; checkpoints; resume
runs.py     the training job end to end: data -> trained run directory
"""
