"""Docket: durable workflows for Python on a Kafka-style log.

The public surface is small on purpose; everything else lives in its submodule.
"""

from docket import errors
from docket._version import __version__
from docket.app import App
from docket.client import Client, IdReusePolicy
from docket.config import Settings
from docket.context import QueryContext, WorkflowContext
from docket.definitions import Step, Workflow, query, run, signal, step_ref, update
from docket.engine import Engine
from docket.errors import ApplicationError, StepError, WorkflowFailedError
from docket.handles import UpdateHandle, WorkflowHandle
from docket.reader import HistoryEvent, WorkflowDescription
from docket.retry import RetryPolicy
from docket.runtime.relations import ParentClosePolicy
from docket.saga import Saga
from docket.worker import StepContext, step_context

__all__ = [
    "App",
    "ApplicationError",
    "Client",
    "Engine",
    "HistoryEvent",
    "IdReusePolicy",
    "ParentClosePolicy",
    "QueryContext",
    "RetryPolicy",
    "Saga",
    "Settings",
    "Step",
    "StepContext",
    "StepError",
    "UpdateHandle",
    "Workflow",
    "WorkflowContext",
    "WorkflowDescription",
    "WorkflowFailedError",
    "WorkflowHandle",
    "__version__",
    "errors",
    "query",
    "run",
    "signal",
    "step_context",
    "step_ref",
    "update",
]
