"""``@bentohost.task``: the sub-routes of a task API, its settings and its OpenAPI paths.

A task API keeps its ``POST {route}`` (a direct call) and gains BentoML's five routes,
published to C after every API (``_config.service_config``) in this order, so that C
routes them by method and path like any API and hands them to the worker's
``TaskManager`` (``_task_runner``):

=====================  ======  ==================================================
``{route}/submit``     POST    queue a call (same body as the API); ``{"task_id", "status"}``
``{route}/status``     GET     ``{"task_id", "status", "created_at", "executed_at"}``
``{route}/get``        GET     the stored response, as the API would have answered
``{route}/retry``      POST    queue the stored input again; a new ``{"task_id", "status"}``
``{route}/cancel``     PUT     cancel a pending or running task; its status
=====================  ======  ==================================================

Settings (``tasks={...}`` in ``@service``, or the config file's ``tasks`` map; the
environment wins): ``store`` (``BENTOHOST_TASK_STORE``, else BentoML's
``BENTOML_RESULT_STORE``; default ``task_result.db`` in the working directory),
``max_running`` tasks at once per worker (``BENTOHOST_TASK_MAX_RUNNING``; default the
service's ``threads``) and ``ttl`` seconds a finished task is kept
(``BENTOHOST_TASK_TTL``; default 24 h, as BentoML).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._service import Service

__all__ = [
    "ACTIONS",
    "TaskRoute",
    "TaskSettings",
    "task_routes",
    "task_settings",
    "has_tasks",
    "openapi_task_paths",
    "TASK_STATUS_SCHEMA",
]

#: (action, HTTP method), in wire order
ACTIONS: tuple[tuple[str, str], ...] = (
    ("submit", "POST"),
    ("status", "GET"),
    ("get", "GET"),
    ("retry", "POST"),
    ("cancel", "PUT"),
)

DEFAULT_STORE = "task_result.db"
DEFAULT_TTL_S = 24 * 3600.0
MAX_RUNNING_LIMIT = 1024


class TaskRoute(NamedTuple):
    api: str  # the task API's name
    action: str  # one of ACTIONS
    method: str  # its HTTP method
    route: str  # the API's route + "/" + action (without the service's path_prefix)


def has_tasks(svc: Service[Any]) -> bool:
    return any(m.is_task for m in svc.apis.values())


def task_routes(svc: Service[Any]) -> list[TaskRoute]:
    """Every task sub-route of ``svc``, in the order C numbers them after the APIs."""
    out: list[TaskRoute] = []
    for m in svc.apis.values():
        if m.is_task:
            for action, method in ACTIONS:
                out.append(TaskRoute(m.name, action, method, f"{m.route}/{action}"))
    return out


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(default=None, min_length=1)
    max_running: int | None = Field(default=None, ge=1, le=MAX_RUNNING_LIMIT)
    ttl: float | None = Field(default=None, gt=0)


class TaskSettings(BaseModel):
    """The resolved settings of one service's tasks."""

    model_config = ConfigDict(frozen=True)

    store: str  # absolute path of the SQLite file
    max_running: int = Field(ge=1, le=MAX_RUNNING_LIMIT)
    ttl: float = Field(gt=0)


def task_settings(config: Mapping[str, Any] | None, threads: int, environ: Mapping[str, str] | None = None) -> TaskSettings:
    """Settings from the service's ``tasks`` map under the environment's variables.

    Raises ``ValueError`` naming the bad option.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = dict(config or {})
    for key, names in (
        ("store", ("BENTOHOST_TASK_STORE", "BENTOML_RESULT_STORE")),
        ("max_running", ("BENTOHOST_TASK_MAX_RUNNING",)),
        ("ttl", ("BENTOHOST_TASK_TTL",)),
    ):
        for name in names:
            if env.get(name):
                raw[key] = env[name]
                break
    try:
        opts = _Options.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"tasks.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid task settings: {problems}") from None
    store = opts.store or DEFAULT_STORE
    if store == ":memory:" or store.startswith("file::memory:"):
        raise ValueError("invalid task settings: tasks.store must be a file the workers share, not ':memory:'")
    return TaskSettings(
        store=os.path.abspath(os.path.expanduser(store)),
        max_running=opts.max_running or max(1, min(int(threads), MAX_RUNNING_LIMIT)),
        ttl=opts.ttl or DEFAULT_TTL_S,
    )


# --------------------------------------------------------------------------- OpenAPI

#: BentoML's component (its Literal lists values its server never sends; these are the real ones)
TASK_STATUS_SCHEMA: dict[str, Any] = {
    "title": "TaskStatusResponse",
    "type": "object",
    "properties": {
        "task_id": {"title": "Task Id", "type": "string"},
        "status": {
            "title": "Status",
            "type": "string",
            "enum": ["pending", "in_progress", "completed", "failed", "canceled"],
        },
        "created_at": {"title": "Created At", "type": "string"},
        "executed_at": {"title": "Executed At", "type": "string", "nullable": True},
    },
    "required": ["task_id", "status", "created_at", "executed_at"],
}

_TASK_ID_PARAM = {"name": "task_id", "in": "query", "required": True, "schema": {"type": "string", "title": "Task ID"}}


def openapi_task_paths(
    svc_name: str,
    api_name: str,
    route: str,
    request_body: dict[str, Any],
    result_response: dict[str, Any],
    errors: dict[str, Any],
) -> dict[str, Any]:
    """The five task paths BentoML's ``docs.json`` adds for a task API."""
    status_ok = {
        "description": "Successful Response",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskStatusResponse"}}},
    }

    def op(suffix: str, description: str, ok: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "responses": {"200": ok, **errors},
            "tags": ["Service APIs"],
            "x-bentoml-name": f"{api_name}_{suffix}",
            "description": description,
            "operationId": f"{svc_name}__{api_name}_{suffix}",
            **extra,
        }

    query = {"parameters": [dict(_TASK_ID_PARAM)]}
    return {
        f"{route}/status": {"get": op("status", f"Get status of task {api_name}", status_ok, **query)},
        f"{route}/get": {"get": op("result", f"Get result of task {api_name}", result_response, **query)},
        f"{route}/submit": {
            "post": op("submit", f"Submit a new task of {api_name}", status_ok, requestBody=request_body)
        },
        f"{route}/retry": {"post": op("retry", f"Retry a task of {api_name}", status_ok, **query)},
        # BentoML reuses "_retry" here, a duplicate operationId that makes its document invalid
        f"{route}/cancel": {"put": op("cancel", f"Cancel an in-progress task of {api_name}", status_ok, **query)},
    }
