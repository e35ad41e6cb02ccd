"""The Ray wing: the only package in ray_ncut that imports ray.

executor.py  RayExecutor: Ray Data tasks over read units, the labelling actor pool, Ray Train runs
dataset.py   joining or starting Ray for a job (init_ray, disconnect)
train.py     TorchTrainer wiring around ray_ncut.loops; checkpoints; resume
"""
