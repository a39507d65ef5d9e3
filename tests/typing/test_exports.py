"""The public root is small and deliberate: changing it must be a conscious decision."""

import docket

EXPECTED = [
    "App", "ApplicationError", "Client", "Engine", "HistoryEvent", "IdReusePolicy", "QueryContext",
    "RetryPolicy", "Saga",
    "Settings", "Step", "StepContext", "StepError", "Workflow", "WorkflowContext", "WorkflowDescription",
    "WorkflowFailedError", "WorkflowHandle", "__version__", "errors", "query", "run", "signal",
    "step_context", "step_ref", "update", "UpdateHandle", "ParentClosePolicy",
]


def test_public_root_is_frozen() -> None:
    assert sorted(docket.__all__) == sorted(EXPECTED)
    for name in docket.__all__:
        assert hasattr(docket, name), name
