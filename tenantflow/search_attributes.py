"""The Temporal search attributes tenantflow's runs carry, defined once: the dev server, the tests
and the compose file register exactly ``ALL``; the workflows keep ``TenantStatus``/``FailedStep``
current, so ``temporal workflow list --query 'TenantStatus="failed"'`` lists the runs waiting for
a person."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")  # the tenant's name, set at start
TENANT_STATUS = SearchAttributeKey.for_keyword("TenantStatus")  # tenantflow.catalog.ProjectStatus
FAILED_STEP = SearchAttributeKey.for_keyword("FailedStep")  # the step waiting for a retry, if any

ALL: tuple[SearchAttributeKey, ...] = (TENANT_ID, TENANT_STATUS, FAILED_STEP)
