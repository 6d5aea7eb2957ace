"""``DeliverEventWorkflow``: one completion event (``tenant.online``, ``tenant.failed``,
``tenant.deleted``) to every receiver, each with its own retries.

A tenant's run starts one per event (``StepsWorkflow._announce``) as a child with
``parent_close_policy=ABANDON`` and the event id as workflow id, and goes on without waiting for it.
Why a run of its own rather than an activity the tenant's run starts and does not await: a receiver
may be down for a day, and nothing of the tenant's run may wait on it. An activity belongs to the run
that scheduled it, and a provisioning run returns right after ``online``: it would have to hold its
result back until every delivery was done, or drop them. A child run outlives its parent, shows each
event's attempts and the receivers' answers in a history of its own (a failed ``DeliverEventWorkflow``
is an event some receiver did not get), and cannot be started twice for one event id.

Each receiver gets its own activity, all at once: a dead receiver retries alone and delays nobody.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from tenantflow.catalog import WorkflowName
    from tenantflow.contracts import (
        DeliverEventInput,
        DeliveryInput,
        DeliveryReport,
        DeliveryResult,
        TenantEvent,
    )
    from workflows.base import describe_activity_error
    from workflows.steps import DELIVER_EVENT, WEBHOOK_ATTEMPT_TIMEOUT, WEBHOOK_BUDGET, WEBHOOK_RETRY


@workflow.defn(name=WorkflowName.DELIVER_EVENT)
class DeliverEventWorkflow:
    @workflow.run
    async def run(self, input: DeliverEventInput) -> DeliveryReport:
        """Deliver ``input.event`` to each URL; fails (listing who did not get it and why) unless all did."""
        outcomes = await asyncio.gather(*(self._deliver(input.event, url) for url in input.urls))
        undelivered = {url: o for url, o in zip(input.urls, outcomes, strict=True) if isinstance(o, str)}
        delivered = [o for o in outcomes if isinstance(o, DeliveryResult)]
        if undelivered:
            reasons = "; ".join(f"{url}: {reason}" for url, reason in undelivered.items())
            raise ApplicationError(
                f"event {input.event.id} not delivered to {len(undelivered)} of {len(input.urls)} "
                f"receivers: {reasons}",
                {"undelivered": undelivered, "delivered": [d.url for d in delivered]},
                type="EventUndelivered", non_retryable=True,
            )
        return DeliveryReport(input.event.id, delivered)

    async def _deliver(self, event: TenantEvent, url: str) -> DeliveryResult | str:
        """The receiver's 2xx, or why it never came (refused, or still failing after a day)."""
        try:
            delivered: DeliveryResult = await workflow.execute_activity(
                DELIVER_EVENT, DeliveryInput(event, url),
                start_to_close_timeout=WEBHOOK_ATTEMPT_TIMEOUT, schedule_to_close_timeout=WEBHOOK_BUDGET,
                retry_policy=WEBHOOK_RETRY, summary=url,
            )
            return delivered
        except ActivityError as err:
            message, _ = describe_activity_error(err)
            workflow.logger.warning("event %s not delivered to %s: %s", event.id, url, message)
            return message
