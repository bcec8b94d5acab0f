"""The OpenAPI 3.1 document of the JSON API, made from the endpoint table (_http.py) and
the msgspec Structs its endpoints return: what is documented is what is answered."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .._version import VERSION
from ._http import ENDPOINTS, JSON, METRICS_PATH, OPENAPI_PATH, PAGES, ErrorReply

_REF: Final = "#/components/schemas/{name}"
_REFUSALS: Final = {
    "400": "a query parameter that does not fit (the message names it)",
    "401": "a token is required and was missing or wrong",
    "403": "a browser's Origin that is not allowed",
    "503": "the runtime is not running, or its store cannot be read",
}


def openapi_document(server_url: str) -> bytes:
    """The document as JSON; ``server_url`` is where the API's paths start (the mount
    path under an ASGI app, ``/`` on conveyor's own server)."""
    types: list[Any] = [ErrorReply]
    for endpoint in ENDPOINTS:
        types.append(endpoint.returns)
        types.extend(param.type for param in endpoint.params)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    found = iter(schemas)
    error: dict[str, Any] = {"content": {JSON: {"schema": next(found)}}}
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        returns = next(found)
        parameters = [
            {"name": param.name, "in": "query", "required": False}
            | {"description": param.description, "schema": next(found)}
            for param in endpoint.params
        ]
        if "{" in endpoint.path:
            name = endpoint.path[endpoint.path.index("{") + 1 : -1]
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
        responses = {
            "200": {"description": endpoint.summary, "content": {JSON: {"schema": returns}}}
        }
        if endpoint.not_found:
            responses["404"] = {"description": "no such job or queue"} | error
        responses |= {status: {"description": text} | error for status, text in _REFUSALS.items()}
        operation = {"summary": endpoint.summary, "operationId": _operation_id(endpoint.path)}
        if endpoint.description:
            operation["description"] = endpoint.description
        paths[endpoint.path] = {
            "get": operation | {"parameters": parameters, "responses": responses}
        }
    paths |= _other_paths(error)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "conveyor",
            "version": VERSION,
            "description": "conveyor's read-only JSON API. Changes (enqueue, cancel, rerun, ...)"
            " go through the websocket protocol at the same root (docs/protocol.md).",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": components},
    }
    return msgspec.json.encode(document)


def _operation_id(path: str) -> str:
    words = path.strip("/").replace("{", "").replace("}", "").replace("/", "_")
    return "get_" + words


def _other_paths(error: dict[str, Any]) -> dict[str, Any]:
    """The paths that answer something other than JSON records."""
    page = next(iter(PAGES))
    return {
        page: {
            "get": {
                "summary": "The dashboard (its scripts and stylesheet beside it)",
                "operationId": "get_dashboard",
                "responses": {
                    "200": {"description": "the page", "content": {"text/html": {}}},
                },
            }
        },
        METRICS_PATH: {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "get_metrics",
                "responses": {
                    "200": {"description": "the metrics", "content": {"text/plain": {}}},
                    "501": {"description": "needs pip install 'conveyor[metrics]'"} | error,
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "summary": "This document",
                "operationId": "get_openapi",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {}}}},
            }
        },
    }
