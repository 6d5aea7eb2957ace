"""The API's own documentation: Swagger UI and ReDoc served with local assets (no CDN, so they
render on a machine without internet), and the error answers every route shares written into the
OpenAPI spec (FastAPI documents only the 422 it generates itself)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_ERROR_BODY = {
    "application/json": {
        "schema": {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
    }
}
UNAUTHORIZED = {
    "description": "Missing or invalid API token (`Authorization: Bearer ...`).", "content": _ERROR_BODY
}
NOT_JSON = {"description": "The request body is not valid JSON.", "content": _ERROR_BODY}

# Swagger UI: no call to the public validator service for its badge.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


def document_shared_errors(app: FastAPI) -> None:
    """Add 401 to every operation behind the API token (those FastAPI marks with its bearer
    ``security`` requirement) and 400 to every one that takes a body."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        for operations in schema["paths"].values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if operation.get("security"):
                    responses.setdefault("401", UNAUTHORIZED)
                if "requestBody" in operation:
                    responses.setdefault("400", NOT_JSON)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
