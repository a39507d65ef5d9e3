"""Every error Docket raises on purpose, in one shallow tree.

```
DocketError                         base; every error Docket raises on purpose
├── ConfigurationError              bad settings, environment or app wiring; raised at startup
├── DefinitionError                 bad decorator use, duplicate names (at registration)
├── SerializationError              a value or record could not be encoded or decoded
├── LogError                        log backend failure (sqlite3 / Kafka error kept as __cause__)
│   └── PartitionFencedError        another process owns the partition now
├── StateStoreError
│   ├── StateStoreLockedError       another process holds the RocksDB lock
│   └── StateStoreCorruptedError    unreadable store; rebuild it from the log
├── ClientError                     outcomes seen by Client and handles
│   ├── WorkflowNotFoundError
│   ├── WorkflowAlreadyStartedError
│   ├── WorkflowFailedError         __cause__ is the ExecutionFailure that ended the run
│   └── ReplyTimeoutError
├── ExecutionFailure                crosses the log as a Failure record
│   ├── ApplicationError            raised by user code: message, type=, non_retryable=, details=
│   ├── StepError                   a step failed after its retry policy; __cause__ = last failure
│   ├── TimeoutError                .kind: start_to_close | heartbeat | schedule_to_*
│   └── CancelledError
├── NondeterminismError             replay mismatch; stops that execution only
├── WorkflowError                   misuse of the workflow API inside workflow code
│   └── DeadlockError               workflow code ran too long without awaiting; stops it
└── ReadOnlyContextError            a durable operation inside a query
```

Messages answer three questions: what happened, where (ids, offsets, paths), and what to do.

"""

from __future__ import annotations

from typing import Any


class DocketError(Exception):
    """Base class of every error Docket raises on purpose."""


class ConfigurationError(DocketError):
    """Settings, environment variables or app wiring are wrong; raised at startup."""


class DefinitionError(DocketError):
    """A workflow or step definition is invalid; raised when it is registered."""


class SerializationError(DocketError):
    """A value or record could not be encoded or decoded."""


class LogError(DocketError):
    """The log backend failed; the backend's own exception is kept as ``__cause__``."""


class PartitionFencedError(LogError):
    """Another process owns this partition now; this process must stop writing to it."""


class StateStoreError(DocketError):
    """A RocksDB state store could not be used."""


class StateStoreLockedError(StateStoreError):
    """Another process holds the state store open; ``holder`` is its pid, when known."""

    def __init__(self, message: str, *, holder: int | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class StateStoreCorruptedError(StateStoreError):
    """The state store cannot be read; it can be rebuilt from the history topic."""


class ClientError(DocketError):
    """An outcome a client sees when talking to executions."""


class WorkflowNotFoundError(ClientError):
    """No execution exists with the given workflow ID (or run ID)."""


class WorkflowAlreadyStartedError(ClientError):
    """The ID-reuse policy forbids starting another run under this workflow ID."""

    def __init__(self, message: str, *, workflow_id: str, run_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.run_id = run_id


class WorkflowFailedError(ClientError):
    """The workflow run ended in failure; ``__cause__`` is the failure that ended it."""

    def __init__(self, message: str, *, workflow_id: str, run_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.run_id = run_id


class UpdateFailedError(ClientError):
    """The update's handler raised, or the run closed before it finished; ``__cause__`` is
    the failure. The workflow itself goes on (unless it was the one that closed)."""

    def __init__(self, message: str, *, workflow_id: str, update_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.update_id = update_id


class ReplyTimeoutError(ClientError):
    """No reply arrived in time; usually no engine is running for this data directory."""


class ExecutionFailure(DocketError):
    """A failure that crosses the log as a Failure record (type, message, stack, cause).

    When a failure is decoded in another process, ``type_name`` keeps the qualified name of
    the original exception type and ``remote_stack`` its formatted traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        type_name: str | None = None,
        non_retryable: bool = False,
        details: Any = None,
        remote_stack: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type_name = type_name or type(self).__name__
        self.non_retryable = non_retryable
        self.details = details
        self.remote_stack = remote_stack


class ApplicationError(ExecutionFailure):
    """Raise from a step or workflow to fail it with a chosen type and retry behaviour.

    ``type`` names the error for retry policies (``non_retryable_error_types``);
    ``non_retryable=True`` stops retries whatever the policy says.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,  # noqa: A002 - mirrors Temporal's ApplicationError
        non_retryable: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(
            message,
            type_name=type or "ApplicationError",
            non_retryable=non_retryable,
            details=details,
        )


class StepError(ExecutionFailure):
    """A step failed for good (after its retry policy); ``__cause__`` is the last failure."""


class TimeoutError(ExecutionFailure):  # noqa: A001 - the Temporal name users expect
    """A step overran a timeout; ``kind`` is ``start_to_close`` or ``heartbeat`` (an
    attempt's, retried), ``schedule_to_close`` or ``schedule_to_start`` (the step's, not
    retried), or ``run`` or ``execution`` (a workflow's)."""

    def __init__(self, message: str, *, kind: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class CancelledError(ExecutionFailure):
    """The execution or step was cancelled."""


class ChildWorkflowError(ExecutionFailure):
    """A child workflow could not start, or did not complete; ``__cause__`` is why (the
    child's own failure, a TimeoutError, a CancelledError, or the refusal to start it)."""


class NondeterminismError(DocketError):
    """Workflow code asked for something other than what its history recorded.

    The execution stops where it is (nothing is recorded) until the code is fixed.
    """


class WorkflowError(DocketError):
    """Workflow code misused the workflow API (for example, called a step directly)."""


class DeadlockError(WorkflowError):
    """Workflow code ran longer than the deadlock timeout (2 s) without awaiting anything.

    Raised inside that code, at the line it was on; the execution stops there (nothing is
    recorded) until an engine with fixed code resumes it.
    """


class ReadOnlyContextError(DocketError):
    """A query handler asked for a durable operation (step, sleep, ...): queries only read."""
