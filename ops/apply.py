"""`tuneflow ops apply`: make a Prefect server's work pools, alert target and automations match ops/.

Every object is created when missing and updated when present, so an edit to a file here reaches a server that
is already running (make stack runs this on each start). Talks to the server of PREFECT_API_URL.

- work pools: ops/work-pools/pools.yaml, each with its committed base job template;
- the alert target: one notification block (`tuneflow-alerts`, a Custom Webhook posting Slack's JSON,
  `{"text": "<subject>\\n<body>"}`) for TUNEFLOW_ALERT_URL, or any notification block already on the server
  (`--alert-block slug/name`: SendGrid email, Teams, PagerDuty, ...);
- automations: every ops/automations/*.yaml, in the format of `prefect automation create --from-file`, except that
  a `send-notification` action names no block: it goes to `tuneflow-alerts`. Their templates may use
  `{{ dashboard }}`, the dashboard's URL as this client reaches it (PREFECT_UI_URL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

OPS_DIR = Path(__file__).resolve().parent
AUTOMATIONS_DIR = OPS_DIR / "automations"
WORK_POOLS_DIR = OPS_DIR / "work-pools"
ALERT_BLOCK = "tuneflow-alerts"
ALERT_URL_VARIABLE = "TUNEFLOW_ALERT_URL"
DEFAULT_POOLS = ("gpu", "cpu")
# Slack's incoming webhooks take {"text": ...}; any other receiver gets the same JSON. The URL is kept as a secret
# of the block (Slack's URL is the credential), so the dashboard shows it masked.
ALERT_JSON = {"text": "{{subject}}\n{{body}}"}


@dataclass
class OpsReport:
    """What `apply_ops` did, one line per object, and what it could not apply."""

    lines: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)


def alert_block(url: str) -> CustomWebhookNotificationBlock:
    scheme = urlsplit(url).scheme
    if scheme not in {"http", "https"} or not urlsplit(url).netloc:
        raise ValueError(
            f"{ALERT_URL_VARIABLE}={url!r} is not an http(s) URL; set it to a webhook that takes JSON, e.g. a Slack "
            "incoming webhook https://hooks.slack.com/services/..."
        )
    return CustomWebhookNotificationBlock(
        name="tuneflow", url="{{alert_url}}", json_data=ALERT_JSON, secrets={"alert_url": url}
    )


def read_pools(names: tuple[str, ...] | None) -> dict[str, dict]:
    """The pool definitions to apply: the named ones, or every pool not marked on_request."""
    pools = yaml.safe_load((WORK_POOLS_DIR / "pools.yaml").read_text())
    if names is None:
        return {name: pool for name, pool in pools.items() if not pool.get("on_request")}
    unknown = sorted(set(names) - set(pools))
    if unknown:
        raise ValueError(f"no work pool {unknown} in ops/work-pools/pools.yaml; choose from {sorted(pools)}")
    return {name: pools[name] for name in names}


def read_automations(dashboard: str, alert_block_id: str | None) -> list[AutomationCore]:
    """Every automation of ops/automations, its notifications pointed at the alert block (None: not yet known)."""
    automations = []
    for path in sorted(AUTOMATIONS_DIR.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        for action in spec.get("actions", []):
            if action.get("type") == "send-notification":
                action["block_document_id"] = alert_block_id
                # The dashboard's URL as the person applying reaches it, a Jinja variable for the templates.
                action["body"] = "{% set dashboard = " + json.dumps(dashboard) + " %}" + action["body"]
        automations.append(spec)
    return [AutomationCore.model_validate(spec) for spec in automations if not needs_alert_block(spec) or alert_block_id]


def needs_alert_block(spec: dict) -> bool:
    return any(action.get("type") == "send-notification" for action in spec.get("actions", []))


def apply_pools(client, pools: dict[str, dict], report: OpsReport) -> None:
    for name, pool in pools.items():
        template = json.loads((WORK_POOLS_DIR / pool["base_job_template"]).read_text())
        limit, description = pool.get("concurrency_limit"), pool.get("description")
        try:
            existing = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool["type"], base_job_template=template,
                                                   concurrency_limit=limit, description=description))
            report.lines.append(f"work pool {name}: created ({pool['type']}, concurrency limit {limit or 'none'})")
            continue
        if existing.type != pool["type"]:
            report.not_applied.append(
                f"work pool {name} is of type {existing.type!r} on the server, {pool['type']!r} in ops/: a pool's "
                f"type cannot change; delete it (prefect work-pool delete {name}) and apply again"
            )
            continue
        # Only what ops/ defines: a pool paused from the dashboard stays paused.
        update = WorkPoolUpdate(base_job_template=template, concurrency_limit=limit, description=description)
        if limit is None and existing.concurrency_limit is not None:
            update = WorkPoolUpdate(base_job_template=template, description=description)
            report.not_applied.append(f"work pool {name} keeps its concurrency limit {existing.concurrency_limit} "
                                      "set on the server (ops/ sets none)")
        client.update_work_pool(name, update)
        report.lines.append(f"work pool {name}: updated ({pool['type']}, concurrency limit {limit or 'none'})")


def apply_alert_block(client, alert_url: str | None, other_block: str | None, report: OpsReport) -> str | None:
    """The id of the block alerts go to: `other_block` ("slug/name") as it is on the server, or the tuneflow-alerts
    block saved (created or updated) for alert_url, else the tuneflow-alerts block the server already has."""
    if other_block:
        slug, _, name = other_block.partition("/")
        try:
            document = client.read_block_document_by_name(name, slug, include_secrets=False)
        except ObjectNotFound:
            raise ValueError(f"--alert-block {other_block!r}: the server has no block {name!r} of type {slug!r}; "
                             "create it first (dashboard: Blocks), or give TUNEFLOW_ALERT_URL instead") from None
        report.lines.append(f"alerts go to the {slug} block {name!r}")
        return str(document.id)
    if alert_url:
        block_id = alert_block(alert_url).save(ALERT_BLOCK, overwrite=True)
        report.lines.append(f"notification block {ALERT_BLOCK}: posts to {urlsplit(alert_url).netloc} (Slack JSON)")
        return str(block_id)
    try:
        existing = client.read_block_document_by_name(
            ALERT_BLOCK, CustomWebhookNotificationBlock.get_block_type_slug(), include_secrets=False
        )
    except ObjectNotFound:
        report.not_applied.append(
            f"alerts: {ALERT_URL_VARIABLE} is not set and the server has no {ALERT_BLOCK} block, so no alert "
            f"automation was applied; set {ALERT_URL_VARIABLE}=https://... (a Slack incoming webhook or any JSON "
            "webhook) and apply again"
        )
        return None
    report.lines.append(f"notification block {ALERT_BLOCK}: kept as it is on the server ({ALERT_URL_VARIABLE} not set)")
    return str(existing.id)


def apply_automations(client, automations: list[AutomationCore], report: OpsReport) -> None:
    for automation in automations:
        existing = client.read_automations_by_name(automation.name)
        if existing:
            client.update_automation(existing[0].id, automation)
            for duplicate in existing[1:]:  # made by hand or by an older `prefect automation create`
                client.delete_automation(duplicate.id)
            report.lines.append(f"automation {automation.name}: updated")
        else:
            client.create_automation(automation)
            report.lines.append(f"automation {automation.name}: created")


def apply_ops(alert_url: str | None, pools: tuple[str, ...] | None = None, other_block: str | None = None,
              say: Callable[[str], None] = print) -> OpsReport:
    """Create or update the work pools, the alert block and every automation of ops/ on PREFECT_API_URL's server."""
    if not PREFECT_API_URL.value():
        raise ValueError("PREFECT_API_URL is not set: point it at the server to apply ops/ to "
                         "(e.g. export PREFECT_API_URL=http://prefect.internal:4200/api)")
    report = OpsReport()
    pool_specs = read_pools(pools)
    if alert_url:
        alert_block(alert_url)  # a bad URL fails here, before anything on the server changes
    dashboard = (PREFECT_UI_URL.value() or PREFECT_API_URL.value().removesuffix("/api")).rstrip("/")
    with get_client(sync_client=True) as client:
        apply_pools(client, pool_specs, report)
        block_id = apply_alert_block(client, alert_url, other_block, report)
        apply_automations(client, read_automations(dashboard, block_id), report)
    for line in report.lines:
        say(line)
    for line in report.not_applied:
        say(f"NOT APPLIED: {line}")
    return report
