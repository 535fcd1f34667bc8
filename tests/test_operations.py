"""Ops kept as code (ops/): the automations and alerts, the work-pool templates, the Prefect pin, the time limits.

tests/test_deployments.py applies all of it to a real server and receives the alerts; these check, without a
server, what every file of ops/ and prefect.yaml gives a run.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tuneflow.config import TrainingSettings
from tuneflow.events import EpochFinished, PlannedPhase, TrainingStarted
from tuneflow.training.time_limit import FINE_TUNE_EPOCH_COST, FINISH_ALLOWANCE_S, TrainingTimeLimit

REPO = Path(__file__).resolve().parents[1]
BLOCK_ID = "0b5a1e3e-1d7c-4a48-9d4e-0a6f2c1b7a10"
HEARTBEAT = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


def retrain_deployment() -> dict:
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    return next(deployment for deployment in deployments if deployment["name"] == "retrain")


def test_every_alert_names_the_deployment_run_state_reason_and_dashboard():
    from tuneflow.ops.apply import read_automations

    automations = {automation.name: automation for automation in read_automations("http://prefect.test", BLOCK_ID)}
    assert set(automations) >= {
        "crash-zombie-flows", "tuneflow-alert-retrain-failed", "tuneflow-alert-watch-drive-failing",
        "tuneflow-alert-no-completed-retrain", "tuneflow-alert-gpu-pool-no-worker", "tuneflow-alert-model-promoted",
        "tuneflow-alert-retrain-running-long",
    }
    for name, automation in automations.items():
        notifications = [action for action in automation.actions if action.type == "send-notification"]
        assert bool(notifications) == name.startswith("tuneflow-alert-"), name
        for action in notifications:
            assert str(action.block_document_id) == BLOCK_ID
            prefix, message = action.body.split(" %}", 1)
            assert prefix == '{% set dashboard = "http://prefect.test"'  # the dashboard's URL, for the links
            for label in ("Deployment: ", "Run: ", "State: ", "Reason: ", "Dashboard: {{ dashboard }}/"):
                assert f"\n{label}" in "\n" + message, f"{name}'s message has no {label!r} line"

    failed = automations["tuneflow-alert-retrain-failed"].trigger
    assert failed.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
    sensor = automations["tuneflow-alert-watch-drive-failing"].trigger
    assert (sensor.threshold, sensor.within.total_seconds()) == (3, 3600)
    quiet = automations["tuneflow-alert-no-completed-retrain"].trigger
    assert (quiet.posture, quiet.expect, quiet.within.total_seconds()) == ("Proactive", {"prefect.flow-run.Completed"},
                                                                          8 * 24 * 3600)
    pool = automations["tuneflow-alert-gpu-pool-no-worker"].trigger
    assert (pool.after, pool.expect, pool.within.total_seconds()) == (
        {"prefect.work-pool.not-ready"}, {"prefect.work-pool.ready"}, 15 * 60)
    assert automations["tuneflow-alert-model-promoted"].trigger.expect == {"tuneflow.model.promoted"}


def test_without_an_alert_target_only_the_automations_without_notifications_apply():
    from tuneflow.ops.apply import read_automations

    assert [automation.name for automation in read_automations("http://prefect.test", None)] == ["crash-zombie-flows"]


def test_the_alert_webhook_posts_slack_json_and_rejects_what_is_not_a_url():
    from tuneflow.ops.apply import alert_block

    request = alert_block("https://hooks.slack.com/services/T0/B0/x")._build_request_args("body line", "subject")
    assert request["url"] == "https://hooks.slack.com/services/T0/B0/x" and request["method"] == "POST"
    assert request["json"] == {"text": "subject\nbody line"}
    with pytest.raises(ValueError, match="TUNEFLOW_ALERT_URL='hooks.slack.com/x' is not an http"):
        alert_block("hooks.slack.com/x")


@pytest.mark.parametrize("template", ["process.json", "docker-gpu.json", "kubernetes-gpu.json"])
def test_every_pool_template_gives_the_retrain_run_its_heartbeat_beside_the_deployments_env(template):
    """Deployment env and template env merge (Prefect's own resolution): prefect.yaml's env replaces neither."""
    import asyncio
    import json

    from prefect.workers.base import BaseJobConfiguration

    base_job_template = json.loads((REPO / "ops" / "work-pools" / template).read_text())
    env = retrain_deployment()["work_pool"]["job_variables"]["env"]
    # Only the fields every worker type shares: prefect-docker and prefect-kubernetes add the rest.
    shared = {"job_configuration": {key: value for key, value in base_job_template["job_configuration"].items()
                                    if key in BaseJobConfiguration.model_fields},
              "variables": base_job_template["variables"]}
    configuration = asyncio.run(BaseJobConfiguration.from_template_and_values(shared, {"env": env}, client=object()))
    assert configuration.env[HEARTBEAT] == "180" and configuration.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert configuration.env["PREFECT_CLIENT_MAX_RETRIES"] == "7"


def test_the_container_templates_ask_for_gpus_with_variables_for_node_placement():
    import json

    from prefect.utilities.templating import apply_values

    def rendered(name: str) -> dict:
        template = json.loads((REPO / "ops" / "work-pools" / name).read_text())
        defaults = {key: spec["default"] for key, spec in template["variables"]["properties"].items() if "default" in spec}
        return apply_values(template["job_configuration"], defaults, remove_notset=True)

    docker = rendered("docker-gpu.json")
    assert docker["container_create_kwargs"]["device_requests"] == [
        {"driver": "nvidia", "count": 1, "capabilities": [["gpu"]]}]
    pod = rendered("kubernetes-gpu.json")["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "tuneflow-data"


def test_workers_install_a_prefect_that_sends_heartbeats_and_runs_hold_no_deployment_lease():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (prefect,) = [Requirement(text) for text in dependencies if Requirement(text).name == "prefect"]
    assert Version("3.9.1") in prefect.specifier and not prefect.specifier.contains("3.8.9")
    assert not prefect.specifier.contains("4.0.0")
    # One training at a time comes from the gpu pool's limit (ops/work-pools/pools.yaml), not a deployment lease.
    assert "concurrency_limit" not in retrain_deployment()
    pools = yaml.safe_load((REPO / "ops" / "work-pools" / "pools.yaml").read_text())
    assert pools["gpu"]["concurrency_limit"] == 1


def test_the_run_timeout_and_the_training_limits_are_set_where_a_user_sees_them(monkeypatch):
    from tuneflow.flows.retrain import retrain, run_timeout_seconds

    deployment = retrain_deployment()
    assert deployment["work_pool"]["job_variables"]["env"]["TUNEFLOW_RUN_TIMEOUT_HOURS"] == "24"
    training = deployment["parameters"]["config"]["training"]
    assert {"timeout_factor", "min_images_per_second", "startup_minutes"} <= set(training)
    TrainingSettings.model_validate(training)
    assert retrain.timeout_seconds == 24 * 3600
    monkeypatch.setenv("TUNEFLOW_RUN_TIMEOUT_HOURS", "1.5")
    assert run_timeout_seconds() == 5400
    monkeypatch.setenv("TUNEFLOW_RUN_TIMEOUT_HOURS", "a day")
    with pytest.raises(ValueError, match="TUNEFLOW_RUN_TIMEOUT_HOURS='a day' is not a number of hours"):
        run_timeout_seconds()


PHASES = [PlannedPhase(name="head", first_epoch=0, epochs=5), PlannedPhase(name="fine-tune", first_epoch=5, epochs=5)]


def started(phases: list[PlannedPhase]) -> TrainingStarted:
    return TrainingStarted(devices=["CPU:0"], replicas=1, precision="float32", workers=1, worker_index=0,
                           train_images=6000, val_images=1500, classes=["a", "b"], weights="w.h5",
                           resumed_from_epoch=0, total_epochs=phases[-1].first_epoch + phases[-1].epochs, phases=phases)


def epoch(number: int, phase: str, seconds: float) -> EpochFinished:
    return EpochFinished(epoch=number, phase=phase, seconds=seconds, total_epochs=10)


def test_the_training_limit_follows_the_dataset_size_then_the_measured_speed():
    settings = TrainingSettings(timeout_factor=3, min_images_per_second=2, startup_minutes=10)
    limit = TrainingTimeLimit(settings, train_images=6000)
    assert limit.limit_s == 10 * 60 + 6000 / 2  # before any epoch: startup + the images at the slowest speed
    assert "first epoch must end within 1.0 h" in limit.describe_start()

    assert limit.observe(started(PHASES), elapsed_s=100) is None
    message = limit.observe(epoch(1, "head", 60.0), elapsed_s=200)
    # 4 more head epochs at 60 s, 5 fine-tune epochs at FINE_TUNE_EPOCH_COST x 60 s, tripled, and time to save.
    expected = 200 + 3 * (4 * 60 + 5 * FINE_TUNE_EPOCH_COST * 60) + FINISH_ALLOWANCE_S
    assert limit.limit_s == pytest.approx(expected)
    assert "the first head epoch took 60.0 s (100.0 images/s)" in message
    assert limit.observe(epoch(2, "head", 61.0), elapsed_s=261) is None

    # The first fine-tune epoch is measured: its own speed replaces the guess.
    limit.observe(epoch(6, "fine-tune", 100.0), elapsed_s=600)
    assert limit.limit_s == pytest.approx(600 + 3 * 4 * 100 + FINISH_ALLOWANCE_S)
    assert "raise training.timeout_factor" in limit.exceeded_message(pid=42)


def test_timeout_minutes_caps_the_derived_limit():
    limit = TrainingTimeLimit(TrainingSettings(timeout_minutes=20), train_images=100_000)
    assert limit.limit_s == 20 * 60
    limit.observe(started(PHASES[:1]), elapsed_s=10)
    limit.observe(epoch(1, "head", 600.0), elapsed_s=700)
    assert limit.limit_s == 20 * 60
