"""The Ray Train run of a job or trial (ray_app.job_worker.one_worker_trainer), built without a cluster."""

from __future__ import annotations

import os
from pathlib import Path


def test_a_jobs_trainer_leaves_out_the_dataset_manager_and_keeps_what_a_run_needs(monkeypatch):
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    from ray_app.job_worker import LEAN_TRAIN_ENV, one_worker_trainer

    for name in LEAN_TRAIN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")  # a value set already is kept

    def kinds(trainer) -> set[str]:
        return {type(c).__name__ for c in trainer._create_default_callbacks()}

    config = {"scaling_config": ScalingConfig(num_workers=1), "torch_config": TorchConfig(backend="gloo")}
    trainer = one_worker_trainer(lambda: None, **config)
    assert isinstance(trainer, TorchTrainer)
    plain = kinds(TorchTrainer(lambda: None, **config))
    # Ray Train's own trainer starts a DatasetManager for every run; a job's has none, and the rest stays
    assert DatasetsCallback.__name__ in plain
    assert kinds(trainer) == plain - {DatasetsCallback.__name__}
    assert {"BackendSetupCallback", "PlacementGroupCleanerCallback", "AcceleratorSetupCallback"} <= kinds(trainer)
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert os.environ["RAY_TRAIN_METRICS_ENABLED"] == "0"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"


def test_no_module_builds_a_torch_trainer_of_its_own():
    """Jobs and trials alike go through one_worker_trainer (a TorchTrainer of its own would start
    the DatasetManager again)."""
    package = Path(__file__).resolve().parents[1] / "ray_app"
    builders = sorted(p.name for p in package.glob("*.py") if "one_worker_trainer(\n" in p.read_text())
    assert builders == ["sweep_run.py", "train_run.py"]
    assert not [p.name for p in package.glob("*.py") if "TorchTrainer(" in p.read_text()]
