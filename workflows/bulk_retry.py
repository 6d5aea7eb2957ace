"""``RetryFailedWorkflow``: resume, after an outage is fixed, every run that waits on a failed step
(matching a filter), a batch at a time with a pause between batches, so the fix does not become a
thundering herd. It is a workflow so that it survives restarts of the API, the worker and Temporal,
and so its progress is visible (``progress`` query; the API's ``GET /v1/retry-failed/{id}``).

Each run is resumed with the same ``retry`` signal an operator would send; a run that no longer
waits (retried meanwhile, or deleted) ignores it or is gone, and is reported, not failed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.bulk import BulkActivities
    from tenantflow.catalog import PROGRESS_QUERY, RETRY_SIGNAL, WorkflowName
    from tenantflow.contracts import RetryFailedInput, RetryFailedProgress, RetryRequest
    from workflows.steps import MIRROR_RETRY, MIRROR_TIMEOUT


@workflow.defn(name=WorkflowName.RETRY_FAILED)
class RetryFailedWorkflow:
    def __init__(self) -> None:
        self._progress = RetryFailedProgress()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> RetryFailedProgress:
        return self._progress

    @workflow.run
    async def run(self, input: RetryFailedInput) -> RetryFailedProgress:
        waiting = await workflow.execute_activity_method(
            BulkActivities.find_waiting_runs, input.filter,
            start_to_close_timeout=MIRROR_TIMEOUT, retry_policy=MIRROR_RETRY,
        )
        progress = self._progress
        progress.matched = len(waiting)
        request = RetryRequest(reason=input.reason or "bulk retry",
                               requested_by=input.requested_by or "retry-failed")
        size = max(input.batch_size, 1)
        for start in range(0, len(waiting), size):
            if start:
                await workflow.sleep(timedelta(seconds=input.pause_seconds))
            for run in waiting[start:start + size]:
                try:
                    await workflow.get_external_workflow_handle(run.workflow_id).signal(RETRY_SIGNAL, request)
                    progress.retried += 1
                except ApplicationError:  # the run has ended (e.g. deleted meanwhile)
                    progress.not_waiting.append(run.tenant_id)
            progress.batches_done += 1
        progress.done = True
        return progress
