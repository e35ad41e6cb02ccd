"""deploy/: the Kubernetes manifests are valid against KubeRay's own CRD schemas (v1.7.0, copied
into tests/data), every command they run names a job and flags that exist, and the nightly
recluster script works and skips while a previous run holds its lock."""

import fcntl
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from jobs_helpers import ROOT

DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).parent / "data" / "kuberay-v1.7.0"
SCRIPT = DEPLOY / "scripts" / "recluster-nightly.sh"


def strict(schema):
    """OpenAPI v3 as the API server reads it: no unknown fields (unless preserved), int-or-string."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: strict(v) for k, v in schema.items()}
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    return schema


def manifests():
    for path in sorted(glob.glob(str(DEPLOY / "**" / "*.y*ml"), recursive=True)):
        for doc in yaml.safe_load_all(open(path)):
            if doc is not None:
                yield os.path.relpath(path, ROOT), doc


def test_every_manifest_is_valid_against_kuberay_crds():
    crds = {}
    for f in SCHEMAS.glob("*.schema.json"):
        s = json.loads(f.read_text())
        crds[(s["apiVersion"], s["kind"])] = s["schema"]
    docs = list(manifests())
    kinds = {doc["kind"] for _, doc in docs}
    assert {"RayJob", "RayCronJob", "RayCluster", "CronJob"} <= kinds
    for path, doc in docs:
        assert doc.get("apiVersion") and (doc.get("metadata") or {}).get("name"), path
        schema = crds.get((doc["apiVersion"], doc["kind"]))
        if schema is None:
            continue
        props = {k: v for k, v in schema["properties"].items() if k not in ("apiVersion", "kind", "metadata")}
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        errors = [f"{path} {'.'.join(map(str, e.path))}: {e.message[:200]}"
                  for e in jsonschema.Draft7Validator(strict({**schema, "properties": props})).iter_errors(body)]
        assert errors == []


def test_a_misspelt_field_is_caught_by_the_same_check():
    schema = json.loads((SCHEMAS / "RayJob.schema.json").read_text())["schema"]
    props = {k: v for k, v in schema["properties"].items() if k not in ("apiVersion", "kind", "metadata")}
    validator = jsonschema.Draft7Validator(strict({**schema, "properties": props}))
    assert list(validator.iter_errors({"spec": {"entrypoint": "x", "shutdownAfterJobFinish": True}}))


def commands():
    """(file, job name, flags) of every `jobs/NAME.py ...` command under deploy/."""
    found = []
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text().replace("\\\n", " ")
        if path.suffix in (".yaml", ".yml"):
            text = "\n".join(json.dumps(doc) for doc in yaml.safe_load_all(text) if doc)  # folded scalars joined
        for m in re.finditer(r"(?:jobs|JOBS)/(\w+)\.py\"?([^\n&;']*)", text):
            found.append((path.name, m.group(1), re.findall(r"(?<![\w-])(--[a-z][\w-]*)", m.group(2))))
    return found


def test_every_command_in_deploy_names_a_job_and_flags_that_exist():
    found = commands()
    assert {name for _, name, _ in found} >= {"train", "assign", "recluster"}
    helps = {}
    for where, name, flags in found:
        assert (ROOT / "jobs" / f"{name}.py").exists(), f"{where}: jobs/{name}.py does not exist"
        if name not in helps:
            done = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{name}.py"), "--help"], capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            helps[name] = set(re.findall(r"(--[a-z][\w-]*)", done.stdout))
        assert set(flags) <= helps[name], f"{where}: jobs/{name}.py has no {sorted(set(flags) - helps[name])}"


def test_the_dockerfile_ships_the_script_and_pins_the_projects_ray():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pinned = re.search(r'"ray\[[^\]]*\]==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"FROM rayproject/ray:{pinned}-" in dockerfile and "COPY --chown=ray:users deploy/scripts" in dockerfile
    for _, doc in manifests():
        for version in re.findall(r'"rayVersion": "([\d.]+)"', json.dumps(doc)):
            assert version == pinned


@pytest.mark.ray
def test_the_nightly_script_trains_labels_moves_latest_and_skips_while_a_run_holds_the_lock(
        ray_cluster, tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "features"
    data.mkdir()
    X = np.random.default_rng(0).normal(size=(600, 2)).astype(np.float32) + np.repeat([[0, 0], [8, 8]], 300, 0)
    pq.write_table(pa.table({"id": np.arange(600), "f1": X[:, 0], "f2": X[:, 1]}), data / "part-0.parquet")
    env = {**os.environ, "DATA": str(data), "ROOT": str(tmp_path / "root"), "K": "2"}
    (tmp_path / "root").mkdir()

    with open(tmp_path / "root" / ".recluster.lock", "w") as lock:  # a previous run still going
        fcntl.flock(lock, fcntl.LOCK_EX)
        skipped = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0 and "the previous recluster still runs" in skipped.stdout
    assert not (tmp_path / "root" / "latest").exists() and os.listdir(tmp_path / "root" / "runs") == []

    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    stamp = os.readlink(tmp_path / "root" / "latest")
    assert stamp.startswith("runs/") and (tmp_path / "root" / stamp / "model.pt").exists()
    labels = pq.read_table(tmp_path / "root" / "labels" / Path(stamp).name / "labels")
    assert labels.num_rows == 600


def test_the_ray_up_config_passes_rays_own_cluster_launcher_schema():
    from jsonschema.exceptions import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config  # what `ray up` does first

    config = prepare_config(yaml.safe_load((DEPLOY / "vm" / "ray-up-cluster.conf").read_text()))
    validate_config(config)
    assert config["available_node_types"]["worker_gpu"]["resources"]["GPU"] >= 1
    assert config["docker"]["image"].endswith(":0.1.0")
    with pytest.raises(ValidationError):  # the check is strict: an unknown key fails it
        validate_config({**config, "max_worker": 8})
