"""The jobs, Ray-free: what each job does, in order, over an executor chosen once.

executor.py  LocalExecutor (this process) or, imported only when chosen, ray_ncut.ray.executor.RayExecutor
scan.py      a planned feature set; the scan, the id check and the constraint rows as passes over it
train.py     the training job: --data -> scan -> warm start -> training -> run directory
label.py     the labelling job: model + --data -> labels, metrics.json, report.html
commands.py  the command lines of jobs/train.py, assign.py, cluster.py and recluster.py
"""
