"""What the command line is given, checked before anything is sent: the app to load, JSON
arguments, task queues, timeouts. Bad input is a usage error (exit 2, click's) or a
`ConfigurationError` (exit 1), with one line that says what to change."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from docket.app import App
from docket.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])


def load_app(spec: str) -> App:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--app must look like 'module:attribute', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import app module {module_name!r} (from --app {spec!r}): {exc}"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        found = "nothing" if app is None else type(app).__name__
        raise ConfigurationError(
            f"--app {spec!r}: {module_name}.{attr} is {found}, not a docket.App"
        )
    return app


def check_queues(app: App, queues: tuple[str, ...]) -> None:
    """A queue no step of the app uses is a typo more often than not: refuse it."""
    known = app.queues()
    if unknown := sorted(set(queues) - known):
        raise click.BadParameter(
            f"{', '.join(map(repr, unknown))}: no step of app {app.name!r} runs there; its "
            f"queues are {', '.join(sorted(known))}",
            param_hint="--queue",
        )


def json_value(text: str | None, what: str) -> Any:
    """Any JSON value given to option ``what`` (None when it was not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None


def json_arg(text: str | None, what: str, kind: type) -> Any:
    """A JSON list or object given to option ``what`` (empty when it was not given)."""
    if text is None:
        return kind()
    value = json_value(text, what)
    if not isinstance(value, kind):
        raise click.BadParameter(
            f"must be a JSON {kind.__name__}, got {type(value).__name__}", param_hint=what
        )
    return value


def kwargs_besides(text: str | None, options: frozenset[str]) -> dict[str, Any]:
    """``--kwargs`` for a client call that keeps ``options`` for itself: such a key would
    be taken as the call's option (a start on another queue, say) or clash with it."""
    kwargs: dict[str, Any] = json_arg(text, "--kwargs", dict)
    if taken := sorted(options.intersection(kwargs)):
        raise click.BadParameter(
            f"{', '.join(map(repr, taken))} cannot be passed by keyword: the client keeps "
            "these names for its own options (see -h); pass the value in --args instead",
            param_hint="--kwargs",
        )
    return kwargs


def timeout_option(default: float | None, description: str) -> Callable[[F], F]:
    """A command's --timeout: seconds above 0, checked by `positive_seconds`."""
    return click.option(
        "--timeout",
        type=float,
        callback=positive_seconds,
        default=default,
        show_default=default is not None,
        help=description,
    )


def positive_seconds(
    ctx: click.Context, param: click.Parameter, value: float | None
) -> float | None:
    """A --timeout: seconds above 0 (``inf`` waits for ever); refused before anything is sent,
    where -1 or nan would give up at once after the request was appended."""
    if value is not None and not value > 0:
        raise click.BadParameter(f"{value} is not a number of seconds above 0")
    return value
