"""``/v1/webhooks/auth``: the auth service tells us about signups and deleted users; each new user
gets a tenant, and a deleted user's tenant is deprovisioned.

The delivery is authenticated on its raw bytes (``api.webhook_auth``) before anything parses it.
Redeliveries are expected (webhooks are at-least-once): the user id is the idempotency key, so
any number of them, concurrent or not, make one tenant and one provisioning run.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from api.deps import SettingsDep, StoreDep, TemporalDep
from api.provisioning import create_tenant, deprovision
from api.schemas import SignupAccepted, SignupEvent, UserDeletionAccepted, WebhookHealth, WebhookIgnored
from api.webhook_auth import verify_webhook
from tenantflow.models import ProjectKind, ProjectStatus
from tenantflow.names import user_project_name
from tenantflow.store import deprovision_workflow_id

router = APIRouter(prefix="/v1/webhooks/auth", tags=["webhooks"])

_SIGNUP_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SignupEvent.model_json_schema(by_alias=True)}},
    }
}


@router.post(
    "/signup",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=_SIGNUP_BODY,
    response_model=None,  # two bodies: SignupAccepted (202) or WebhookIgnored (200)
    responses={
        202: {"model": SignupAccepted | UserDeletionAccepted,
              "description": "The user's tenant is being provisioned (INSERT) or deleted (DELETE)."},
        200: {"model": WebhookIgnored,
              "description": "Not an INSERT/DELETE on auth.users, or no tenant to delete: nothing to do."},
        400: {"description": "The body is not JSON."},
        401: {"description": "Missing or bad signature / bearer token, or a stale timestamp."},
        422: {"description": "The event has no record.id UUID."},
    },
)
async def auth_signup(
    request: Request, response: Response, settings: SettingsDep, store: StoreDep, temporal: TemporalDep
) -> SignupAccepted | UserDeletionAccepted | WebhookIgnored:
    """Provision a new user's tenant (INSERT, 202), or deprovision a deleted user's tenant
    (DELETE, 202). Authenticated by a Standard Webhooks signature or
    ``Authorization: Bearer <webhook secret>``."""
    body = await request.body()
    verify_webhook(
        request.headers, body, secret=settings.webhook_secret.get_secret_value(),
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    event = SignupEvent.model_validate_json(body)
    if (reason := event.ignore_reason()) is not None:
        response.status_code = status.HTTP_200_OK
        return WebhookIgnored(reason=reason)
    user_id = event.user_id()
    if user_id is None:
        where = "old_record.id" if event.is_deletion else "record.id"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{where} must be the user's UUID")
    if event.is_deletion:
        project = await store.get_user_project(user_id)
        if project is None or project.status == ProjectStatus.DELETED:
            response.status_code = status.HTTP_200_OK
            return WebhookIgnored(reason="this user has no tenant to delete")
        project = await deprovision(store, temporal, settings, project)
        return UserDeletionAccepted(
            user_id=user_id, project_id=project.id,
            workflow_id=deprovision_workflow_id(project.id, project.kind, project.name),
        )
    created = await create_tenant(
        store, temporal, settings, name=user_project_name(user_id), kind=ProjectKind.USER,
        external_user_id=user_id, idempotency_key=f"user:{user_id}",
    )
    return SignupAccepted(
        user_id=user_id, project_id=created.project.id, workflow_id=created.project.workflow_id,
        created=created.created,
    )


@router.get("/health", response_model=WebhookHealth)
async def webhook_health() -> WebhookHealth:
    """For the auth service's configuration check. No auth."""
    return WebhookHealth(webhook="auth")
