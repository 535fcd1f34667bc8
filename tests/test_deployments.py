"""The deployments of prefect.yaml on a real `prefect server start`: a new Drive revision retrains on the gpu pool.

Everything a user would run, started by the test on free loopback ports with a temporary PREFECT_HOME: the server
(on a PostgreSQL of its own, started as `make stack DB=postgres` starts it, where PostgreSQL is installed:
tests/prefect_database.py), `tuneflow ops apply` (work pools, alert webhook, automations of ops/), `prefect
--no-prompt deploy --all` from the real prefect.yaml, a process worker per pool, the Drive emulator serving a tiny
dataset and a webhook receiver standing in for Slack. The sensor deployment runs on the cpu worker; for a new
revision it must start exactly one run of the retrain deployment on the gpu worker, with the new file ID and
revision as parameters; the server is restarted while that run trains, and the run must still complete and promote
its model. The automations must post the promotion and a failed run to the webhook. Then a run cancelled while it
trains must leave no training process behind. The test's finalizers stop every process group it started.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.drive_fixtures import drive_emulator, key_file, test_key  # noqa: F401 (fixtures)
from tests.loopback import free_port, webhook_receiver
from tests.prefect_api import drain_prefect_queues
from tests.prefect_database import server_database
from tests.records import head_only_training
from tuneflow.child_process import stop_process_group
from tuneflow.report.text import escape
from tuneflow.tasks.dashboard import ArtifactKeys

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).with_name("prefect")
TUNEFLOW = Path(sys.executable).with_name("tuneflow")
SERVER_START_TIMEOUT_S = 180
# Generous waits for a busy 2-core machine: how long to wait for a state, never an assertion on speed.
SENSOR_RUN_TIMEOUT_S = 240
RETRAIN_RUN_TIMEOUT_S = 600


@dataclass
class LocalStack:
    """A running `prefect server start` and the environment every CLI call and worker gets; the server alone gets
    `server_env` too (its database)."""

    url: str
    env: dict[str, str]
    logs: Path
    server_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def cli(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(PREFECT), *args], cwd=REPO, env={**self.env, **(extra_env or {})}, capture_output=True, text=True
        )
        assert result.returncode == 0, f"`prefect {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            [str(PREFECT), *args], cwd=REPO, env={**self.env, **(extra_env or {})}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def start_server(self) -> None:
        """`prefect server start` on this stack's port and database, once it answers."""
        port = self.url.rsplit(":", 1)[1]
        self.start("server", "server", "start", "--host", "127.0.0.1", "--port", port, extra_env=self.server_env)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{self.api_url}/health", timeout=2)
                return
            except OSError:
                server = self.processes["server"]
                assert server.poll() is None, f"prefect server exited with {server.returncode}\n{self.log_tail('server')}"
                assert time.monotonic() < deadline, (
                    f"prefect server did not answer within {SERVER_START_TIMEOUT_S}s\n{self.log_tail('server')}"
                )
                time.sleep(1)

    def restart_server(self) -> float:
        """Stop the server and start it again on the same port and database, as an upgrade does; seconds it was down."""
        down = time.monotonic()
        stop_process_group(self.processes["server"], grace_seconds=20)
        (self.logs / "server.log").rename(self.logs / "server-before-restart.log")
        self.start_server()
        return time.monotonic() - down

    def log_tail(self, name: str, lines: int = 60) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return f"--- last lines of {name}.log ---\n" + "\n".join(text[-lines:])


@pytest.fixture
def alert_webhook():
    """Where the stack's alerts go (TUNEFLOW_ALERT_URL): a receiver on loopback, as a Slack webhook would be."""
    with webhook_receiver() as receiver:
        yield receiver


def ops_apply(stack: LocalStack, alert_url: str) -> str:
    """`tuneflow ops apply` against the stack's server, as make stack runs it."""
    result = subprocess.run([str(TUNEFLOW), "ops", "apply", "--strict"], cwd=REPO, capture_output=True, text=True,
                            env={**stack.env, "TUNEFLOW_ALERT_URL": alert_url})
    assert result.returncode == 0, f"tuneflow ops apply failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """The deployments' stack on the production database, PostgreSQL, where it is installed (else SQLite, with a
    warning); the other Prefect-server tests keep SQLite covered."""
    with running_stack(tmp_path, postgres=True) as stack:
        yield stack


@contextmanager
def running_stack(tmp_path: Path, postgres: bool = False) -> Iterator[LocalStack]:
    """A `prefect server start` on a free loopback port with its own PREFECT_HOME under tmp_path, on SQLite or, with
    `postgres`, on a PostgreSQL of its own (tests/prefect_database.py); workers, the server and its database are
    stopped on the way out."""
    database = server_database(f"the stack in {tmp_path.name}") if postgres else nullcontext({})
    with database as server_env:
        logs = tmp_path / "logs"
        logs.mkdir()
        url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": f"{url}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",  # as make stack: SQLite's lock errors show in server.log
            "PREFECT_WORKER_QUERY_SECONDS": "2",  # workers poll every 2 s instead of 10: shorter waits, same path
            "KERAS_HOME": str(tmp_path / "keras"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "TUNEFLOW_WORK_DIR": str(REPO),  # the prefect.yaml pull step changes into it
        }
        env.pop("PREFECT_PROFILES_PATH", None)
        stack = LocalStack(url=url, env=env, logs=logs, server_env=server_env)
        try:
            stack.start_server()
            yield stack
        finally:
            drain_prefect_queues()
            # Workers first, all at once (each may take its grace period to exit: 20 s apiece one after the other),
            # then the server they talk to.
            workers = [process for name, process in stack.processes.items() if name != "server"]
            with ThreadPoolExecutor(max(1, len(workers))) as pool:
                list(pool.map(lambda process: stop_process_group(process, grace_seconds=20), workers))
            if "server" in stack.processes:
                stop_process_group(stack.processes["server"], grace_seconds=20)
        leftovers = [name for name, process in stack.processes.items() if process.poll() is None]
        assert not leftovers, f"still running after the test: {leftovers}"


def wait_for_final_state(client, flow_run_id, timeout_s: float, stack: LocalStack, worker: str):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, (
            f"flow run {run.name} still {run.state_name} after {timeout_s}s\n{stack.log_tail(worker)}"
        )
        time.sleep(2)


def process_is_running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan may wait a moment for init to reap it; it holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_training_process(runs_root: Path, earlier_runs: set[Path], stack: LocalStack) -> int:
    """The pid of the training process of the one new run, once it is running."""
    deadline = time.monotonic() + SENSOR_RUN_TIMEOUT_S
    while True:
        new_runs = [path for path in runs_root.iterdir() if path not in earlier_runs] if runs_root.is_dir() else []
        pid_files = [path / "train.pid" for path in new_runs if (path / "train.pid").exists()]
        if pid_files and pid_files[0].read_text().strip():
            pid = int(pid_files[0].read_text())
            if process_is_running(pid):
                return pid
        assert time.monotonic() < deadline, f"no training process started\n{stack.log_tail('worker-gpu')}"
        time.sleep(1)


def run_logs(client, flow_run_id) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def wait_for_run_process_to_exit(client, run, stack: LocalStack, worker: str) -> None:
    """Wait until the process the worker started for `run` has exited. A flow run's process sends the events it
    emitted from a background queue that it drains on its way out, so they have reached the server only then."""
    deadline = time.monotonic() + SENSOR_RUN_TIMEOUT_S
    # The worker records the pid just after starting the process; a quick run can reach its final state first.
    while not (run := client.read_flow_run(run.id)).infrastructure_pid:
        assert time.monotonic() < deadline, f"flow run {run.name} has no process id\n{stack.log_tail(worker)}"
        time.sleep(1)
    pid = int(run.infrastructure_pid)
    while process_is_running(pid):
        assert time.monotonic() < deadline, (
            f"the process {pid} of flow run {run.name} still runs {SENSOR_RUN_TIMEOUT_S}s after it was started, "
            f"though the run is {run.state_name}\n{stack.log_tail(worker)}"
        )
        time.sleep(1)


def run_sensor(client, stack: LocalStack, deployment_id, parameters: dict | None = None):
    """Start a watch-drive run on the cpu worker and wait for it to finish and for its event, if it emitted one,
    to reach the server: the sensor's tick, on demand."""
    created = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    run = wait_for_final_state(client, created.id, SENSOR_RUN_TIMEOUT_S, stack, "worker-cpu")
    assert run.state.is_completed(), (
        f"watch-drive ended {run.state_name}: {run.state.message}\n{run_logs(client, run.id)}\n"
        f"{stack.log_tail('worker-cpu')}"
    )
    wait_for_run_process_to_exit(client, run, stack, "worker-cpu")
    return run


def triggered_retrain_runs(client, deployment_id):
    """Retrain runs the sensor asked for (the weekly schedule's runs carry no Drive revision)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [run for run in runs if "drive_revision" in run.parameters]


def another_revision_of(archive: Path) -> bytes:
    """The same photos in a new zip (a comment changes its bytes and MD5): what re-uploading a dataset gives."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.comment = b"second upload"
    return buffer.getvalue()


def test_a_new_drive_revision_retrains_once_on_the_gpu_pool_and_cancelling_stops_training(
    local_stack, alert_webhook, drive_emulator, key_file, tiny_archive, resnet50_weights_file, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelled, Cancelling, Pending, Scheduled

    from tuneflow.flows.watch_drive import EVENT_NAME, WatchDriveConfig, upload_event_id
    from tuneflow.config import DriveSettings, RetrainConfig, ServingSettings

    stack = local_stack
    file_id = drive_emulator.add_file("dataset.zip", tiny_archive)
    first_revision = drive_emulator.files[file_id].head.id

    applied = ops_apply(stack, alert_webhook.url)
    assert "work pool gpu: created" in applied and "automation tuneflow-alert-retrain-failed: created" in applied
    deploy_output = stack.cli("--no-prompt", "deploy", "--all", extra_env={"TUNEFLOW_DRIVE_FILE_ID": file_id})
    assert "retrain/retrain" in deploy_output and "watch-drive/watch-drive" in deploy_output

    drive = DriveSettings(
        key_file=key_file, api_endpoint=drive_emulator.api_endpoint, http_timeout_s=10, retry_base_delay_s=0.01
    )
    data_root = tmp_path / "data"
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name("retrain/retrain")
        sensor = client.read_deployment_by_name("watch-drive/watch-drive")

        # What prefect.yaml set up, as deployed.
        assert retrain.work_pool_name == "gpu" and sensor.work_pool_name == "cpu"
        # One training at a time comes from the gpu pool's limit, which the server counts from the runs' states:
        # no deployment concurrency lease for the running flow to renew (a server restart cancelled trainings).
        assert retrain.global_concurrency_limit is None
        gpu_pool = client.read_work_pool("gpu")
        assert gpu_pool.concurrency_limit == 1
        # The committed base job template, which gives every flow run a heartbeat (the crash-zombie automation's).
        assert gpu_pool.base_job_template["job_configuration"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "180"

        # An automation that drifted on the server (edited by hand, or by an older ops/) is brought back in line.
        (failed_alert,) = client.read_automations_by_name("tuneflow-alert-retrain-failed")
        client.update_automation(failed_alert.id, AutomationCore.model_validate(
            {**failed_alert.model_dump(exclude={"id", "owner_resource"}), "enabled": False, "description": "edited by hand"}))
        assert "automation tuneflow-alert-retrain-failed: updated" in ops_apply(stack, alert_webhook.url)
        (failed_alert,) = client.read_automations_by_name("tuneflow-alert-retrain-failed")
        assert failed_alert.enabled and failed_alert.description != "edited by hand"
        assert retrain.job_variables["env"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert retrain.parameters["config"]["source"] == f"drive://{file_id}"
        assert sensor.parameters["config"]["file_id"] == file_id
        assert [schedule.schedule.cron for schedule in retrain.schedules] == ["0 3 * * 1"]
        assert sensor.schedules[0].schedule.interval.total_seconds() == 300
        # The sensor's own request is the only thing that starts a run for an upload: no trigger automation.
        assert [automation.name for automation in client.read_automations()
                if any(action.type == "run-deployment" for action in automation.actions)] == []

        # Point both at the emulator and shrink training to seconds: the only changes to the deployed config.
        tiny = RetrainConfig(
            source=f"drive://{file_id}",
            data_root=data_root,
            drive=drive,
            training=head_only_training(resnet50_weights_file, batch_size=4, epochs=1),
            # The serving export of a promotion (seconds of tracing) is checked in test_flow.py, not again here.
            serving=ServingSettings(export_on_promotion=False),
        )
        client.update_deployment(retrain.id, DeploymentUpdate(parameters={"config": tiny.model_dump(mode="json")}))
        watch = WatchDriveConfig(file_id=file_id, drive=drive)
        client.update_deployment(sensor.id, DeploymentUpdate(parameters={"config": watch.model_dump(mode="json")}))

        # The test starts each sensor tick itself; the 5-minute schedule (checked above) would race them.
        for schedule in sensor.schedules:
            client.update_deployment_schedule(sensor.id, schedule.id, active=False)
        for scheduled_tick in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[sensor.id]))
        ):
            client.delete_flow_run(scheduled_tick.id)

        # After an outage of the cpu worker, the ticks it missed are all due at once. A worker without --limit
        # hands them to the server together (each proposed Pending): the first takes the slot, and the others are
        # cancelled instead of queueing to run back to back.
        missed = [client.create_flow_run_from_deployment(sensor.id, state=Scheduled(
            scheduled_time=datetime.now(timezone.utc) - timedelta(minutes=minutes))) for minutes in (15, 10, 5)]
        for tick in missed:
            client.set_flow_run_state(tick.id, Pending())
        states = [client.read_flow_run(tick.id).state for tick in missed]
        assert [state.type for state in states] == [StateType.PENDING, StateType.CANCELLED, StateType.CANCELLED], states
        client.set_flow_run_state(missed[0].id, Cancelled())  # gives its slot back for the ticks below
        for tick in missed:
            client.delete_flow_run(tick.id)

        stack.start("worker-gpu", "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1")
        stack.start("worker-cpu", "worker", "start", "--pool", "cpu", "--type", "process", "--limit", "1")

        # 1. First tick: a baseline, no retraining.
        run_sensor(client, stack, sensor.id)
        seen = client.read_variable_by_name(watch.variable_name)
        assert seen is not None and seen.value["revision"] == first_revision
        assert triggered_retrain_runs(client, retrain.id) == []

        # 2. A new version is uploaded; the next tick asks for one retraining (and emits the upload event).
        second_revision = drive_emulator.upload_revision(file_id, another_revision_of(tiny_archive))
        run_sensor(client, stack, sensor.id)
        deadline = time.monotonic() + 120
        while not (triggered := triggered_retrain_runs(client, retrain.id)):
            assert time.monotonic() < deadline, "the sensor asked for no retrain run"
            time.sleep(1)
        assert len(triggered) == 1, [run.parameters for run in triggered]
        assert triggered[0].parameters["drive_file_id"] == file_id
        assert triggered[0].parameters["drive_revision"] == second_revision

        # The server restarts while that run trains (an upgrade, an outage): the run goes on and completes.
        training_pid = wait_for_training_process(data_root / "runs", set(), stack)
        assert client.read_flow_run(triggered[0].id).state.state_details.deployment_concurrency_lease_id is None
        restart_began = time.monotonic()
        down_s = stack.restart_server()
        trained_through_restart = process_is_running(training_pid)
        run = wait_for_final_state(client, triggered[0].id, RETRAIN_RUN_TIMEOUT_S, stack, "worker-gpu")
        print(f"server restart: training process {training_pid} running when the server stopped; server down "
              f"{down_s:.1f} s; training still running when it was back: {trained_through_restart}; run "
              f"{run.name} ended {run.state_name} {time.monotonic() - restart_began:.1f} s after the restart began")
        assert run.state.is_completed(), (
            f"retrain ended {run.state_name}: {run.state.message}\n{run_logs(client, run.id)}\n"
            f"{stack.log_tail('worker-gpu')}"
        )
        assert run.work_pool_name == "gpu" and run.infrastructure_pid, "the retrain run did not run on the gpu worker"
        artifact_keys = {artifact.key for artifact in client.read_artifacts() if artifact.flow_run_id == run.id}
        # No dataset_name in prefect.yaml: the artifacts are named after the deployment.
        keys = ArtifactKeys.for_dataset("retrain")
        assert {keys.key("report"), keys.key("dataset-download")} <= artifact_keys, artifact_keys

        run_dirs = list((data_root / "runs").iterdir())
        assert len(run_dirs) == 1, run_dirs
        assert (run_dirs[0] / "model.keras").is_file()
        report = (run_dirs[0] / "report.md").read_text()
        # As markdown shows them: markdown escapes a "_" an ID may hold next to a "-" ("a\\_-b" renders "a_-b").
        assert escape(second_revision) in report and escape(file_id) in report
        assert json.loads((run_dirs[0] / "metrics.json").read_text())["data"]["drive_revision"] == second_revision

        # The first model is promoted; the model-promoted automation tells the alert webhook, in Slack's JSON.
        promoted = alert_webhook.wait_for(lambda body: "promoted" in body["text"], timeout_s=120)["text"]
        print(f"alert webhook, promotion:\n{json.dumps({'text': promoted})}")
        assert f"tuneflow: model {run_dirs[0].name} promoted" in promoted
        assert "Deployment: retrain\n" in promoted and f"Run: {run.name}\n" in promoted
        assert f"Dashboard: {stack.url}/runs/flow-run/{run.id}" in promoted
        verdict = promoted.split("Reason: ", 1)[1].split("\n", 1)[0]
        assert f"promoted: {verdict}" in run_logs(client, run.id)  # the verdict the promote step logged

        # A retrain that fails (here at once: its dataset is missing) is told to the webhook with its reason. It
        # runs on the gpu worker while the sensor is checked below.
        missing = tmp_path / "missing" / "dataset.zip"
        broken = tiny.model_copy(update={"source": str(missing), "data_root": tmp_path / "broken-run-data"})
        failing = client.create_flow_run_from_deployment(
            retrain.id, parameters={"config": broken.model_dump(mode="json")}
        )

        # 3. A tick with nothing new emits nothing and starts nothing.
        run_sensor(client, stack, sensor.id)
        # 4. A sensor that lost its memory (or was retried after asking) asks again for the same revision, after the
        # server restart above: the run's idempotency key is in the server's database, so no second run. (The
        # re-emitted event's id was forgotten with the restart, and nothing starts a run from an event.)
        client.delete_variable_by_name(watch.variable_name)
        again = watch.model_copy(update={"trigger_on_first_run": True})
        run_sensor(client, stack, sensor.id, parameters={"config": again.model_dump(mode="json")})
        events = client.read_events(EventFilter(event=EventNameFilter(name=[EVENT_NAME])), limit=50).events
        assert {event.id for event in events} == {upload_event_id(file_id, second_revision)}
        assert [r.id for r in triggered_retrain_runs(client, retrain.id)] == [run.id]
        # 5. The server forgot that run (deleted, its idempotency key with it) and the sensor asks once more: the
        # new run ends at once, Completed, pointing at the version made: tuneflow's own check, which outlives the
        # server's records.
        client.delete_flow_run(run.id)
        client.delete_variable_by_name(watch.variable_name)
        run_sensor(client, stack, sensor.id, parameters={"config": again.model_dump(mode="json")})
        (repeat,) = triggered_retrain_runs(client, retrain.id)
        repeat = wait_for_final_state(client, repeat.id, RETRAIN_RUN_TIMEOUT_S, stack, "worker-gpu")
        assert repeat.state.is_completed(), f"ended {repeat.state_name}: {repeat.state.message}"
        expected = f"revision {second_revision} was already trained into model version {run_dirs[0].name}"
        deadline = time.monotonic() + 30  # a run's last log lines reach the API a moment after its final state
        while expected not in (logs := run_logs(client, repeat.id)):
            assert time.monotonic() < deadline, f"{logs}\n{stack.log_tail('worker-gpu')}"
            time.sleep(1)
        assert "this run trained nothing" in logs
        assert list((data_root / "runs").iterdir()) == run_dirs  # no second training

        # The weekly schedule queued its next runs, Mondays at 03:00 UTC.
        scheduled = [
            run for run in client.read_flow_runs() if run.deployment_id == retrain.id and run.state_name == "Scheduled"
        ]
        assert scheduled, "the weekly schedule produced no scheduled retrain runs"
        assert all(
            (run.expected_start_time.weekday(), run.expected_start_time.hour) == (0, 3) for run in scheduled
        ), [run.expected_start_time for run in scheduled]

        failed = wait_for_final_state(client, failing.id, RETRAIN_RUN_TIMEOUT_S, stack, "worker-gpu")
        assert failed.state.is_failed(), f"ended {failed.state_name}: {failed.state.message}"
        failure = alert_webhook.wait_for(lambda body: f"Run: {failed.name}\n" in body["text"], timeout_s=120)["text"]
        print(f"alert webhook, failure:\n{json.dumps({'text': failure})}")
        assert f"tuneflow: retrain run {failed.name} ended Failed" in failure
        assert "Deployment: retrain\n" in failure and "State: Failed\n" in failure
        assert str(missing) in failure.split("Reason: ", 1)[1]
        assert f"Dashboard: {stack.url}/runs/flow-run/{failed.id}" in failure

        # 6. Cancelling a run from the dashboard while it trains stops its training process, freeing the GPU.
        long_training = tiny.model_copy(update={"training": tiny.training.model_copy(update={"epochs": 500})})
        created = client.create_flow_run_from_deployment(
            retrain.id, parameters={"config": long_training.model_dump(mode="json")}
        )
        training_pid = wait_for_training_process(data_root / "runs", set(run_dirs), stack)
        client.set_flow_run_state(created.id, Cancelling())  # what the dashboard's Cancel button does
        cancelled = wait_for_final_state(client, created.id, SENSOR_RUN_TIMEOUT_S, stack, "worker-gpu")
        assert cancelled.state.is_cancelled(), f"ended {cancelled.state_name}: {cancelled.state.message}"
        deadline = time.monotonic() + 60
        while process_is_running(training_pid):
            assert time.monotonic() < deadline, f"training process {training_pid} outlived its cancelled flow run"
            time.sleep(1)
