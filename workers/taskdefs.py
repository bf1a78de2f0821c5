"""The ONE house task decorator: every MarrowMap task gets the same delivery policy.

``house_task`` only declares a task; :func:`register_tasks` binds the declared tasks to a
Celery app with the policy derived from the settings:

* ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies is redelivered, never lost;
* hard time limit = ``task_time_limit_seconds`` for the analysis and ``send_time_limit_seconds``
  for one send attempt, soft limit = 0.9 x that (the task can still record its failure), and the
  Redis visibility timeout (set in ``celery_app``) > every hard limit, so a long task is not
  delivered twice while it is still running (a lost worker's job is re-delivered by the
  listener's watchdog instead, ``service.reconcile``);
* the queue (``queue_prefix`` + base name).

Tasks must be idempotent: they take ids and paths, re-read the job store and return early when
their work is already done. ``celery.shared_task`` and ``app.task`` are banned elsewhere (ruff TID251).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import Celery, Task

from marrowmap.audit import AuditTrail
from marrowmap.contract import QUEUE_SEND
from marrowmap.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

SETTINGS_KEY = "marrowmap_settings"
AUDIT_KEY = "marrowmap_audit"


@dataclass(frozen=True)
class TaskSpec:
    """A declared task: its public name, base queue name and function (first argument: the bound task)."""

    name: str
    queue: str
    func: Callable[..., Any]


_DECLARED: dict[str, TaskSpec] = {}


def house_task(name: str, *, queue: str) -> Callable[[F], F]:
    """Declare a task under ``name`` (a ``marrowmap.contract`` task name) on ``queue``."""

    def declare(func: F) -> F:
        if name in _DECLARED and _DECLARED[name].func is not func:
            raise ValueError(f"task {name} declared twice")
        _DECLARED[name] = TaskSpec(name=name, queue=queue, func=func)
        return func

    return declare


def register_tasks(app: Celery, settings: Settings) -> dict[str, Task]:
    """Bind every declared task to ``app`` with the house delivery policy."""
    app.conf[SETTINGS_KEY] = settings
    tasks: dict[str, Task] = {}
    for spec in _DECLARED.values():
        limit = time_limit_seconds(spec.queue, settings)
        tasks[spec.name] = app.task(
            name=spec.name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            time_limit=limit,
            soft_time_limit=max(1, int(limit * 0.9)),
            queue=settings.queue_name(spec.queue),
            typing=False,
        )(spec.func)
    return tasks


def time_limit_seconds(queue: str, settings: Settings) -> int:
    """Hard time limit of a task on ``queue``: short for the analysis, separate (longer) for one send attempt."""
    return settings.send_time_limit_seconds if queue == QUEUE_SEND else settings.task_time_limit_seconds


def task_settings(task: Task) -> Settings:
    """The settings the task's app was built with."""
    settings = task.app.conf.get(SETTINGS_KEY)
    if not isinstance(settings, Settings):
        raise RuntimeError("Celery app was not built by workers.celery_app.make_celery")
    return settings


def task_audit(task: Task) -> AuditTrail:
    """The audit trail of the task's app, opened by the first task that needs it (in the pool process)."""
    audit = task.app.conf.get(AUDIT_KEY)
    if not isinstance(audit, AuditTrail):
        audit = task.app.conf[AUDIT_KEY] = AuditTrail(task_settings(task))
    return audit
