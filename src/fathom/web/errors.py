"""What an exception means to an HTTP client: a status, an error kind and one line, ``{"error", "message"}``.

Bad input is 422 whether the schema, ``fathom`` (``FathomInputError``) or the model code finds it: a number that
passes the schema but overflows or divides by zero deep in an estimator (``ValueError``, ``ArithmeticError``,
``TypeError``) came from the request, so it is the client's to change, and its traceback is logged here for the
server's operator. Anything else is a fault of the server: 500, with the same body and no internals in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from fathom.errors import FathomInputError
from fathom.web.limits import BusyError, OverLimitError, WorkTimeoutError

logger = logging.getLogger("fathom.web")

MAX_LISTED = 3  # schema violations listed by name in one message; the rest are counted
MAX_DETAIL_CHARS = 240  # of an unexpected exception's text quoted back to the client
_KNOWN = (
    (OverLimitError, 413, "over_limit"),
    (WorkTimeoutError, 408, "timeout"),
    (BusyError, 429, "busy"),
    (FathomInputError, 422, "invalid_input"),
    (ValidationError, 422, "invalid_input"),
)
INPUT_DERIVED = (ValueError, ArithmeticError, TypeError)  # from the request's numbers, unless a fathom check says so


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def status_kind(status: int) -> str:
    """The error kind of an HTTP status: the API's own names, else the status phrase (``method_not_allowed``)."""
    own = {400: "invalid_input", 422: "invalid_input", 408: "timeout", 413: "over_limit", 429: "busy", 500: "internal"}
    if status in own:
        return own[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """Schema violations in one line, each naming its field (``body.seq_len: Field required; body.tp: ...``):
    up to ``MAX_LISTED`` of them, then how many more."""
    if not errors:
        return "invalid request"
    shown = []
    for e in errors[:MAX_LISTED]:
        if e.get("type") == "json_invalid":  # FastAPI's loc is ("body", character offset)
            at = e.get("loc", ())[-1:]
            why = (e.get("ctx") or {}).get("error", "")
            shown.append(
                "body: not valid JSON" + (f" at character {at[0]}" if at else "") + (f" ({why})" if why else "")
            )
            continue
        where = ".".join(str(p) for p in e.get("loc", ()))
        shown.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    more = len(errors) - MAX_LISTED
    return one_line("; ".join(shown) + (f" (and {more} more)" if more > 0 else ""))


def _clipped(text: object) -> str:
    line = one_line(text)
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 3] + "..."


def describe(exc: BaseException) -> tuple[int, str, str]:
    """``(status, kind, one-line message)`` for an exception raised while answering a request or running a job."""
    for kind, status, name in _KNOWN:
        if isinstance(exc, kind):
            if isinstance(exc, ValidationError):  # a model of fathom's own, built from the request's values
                return status, name, f"{exc.title}: {validation_message(exc.errors(include_url=False))}"
            return status, name, one_line(exc)
    if isinstance(exc, INPUT_DERIVED):
        detail = _clipped(exc) or "no details"
        return (
            422,
            "invalid_input",
            f"cannot compute with the request's values ({type(exc).__name__}: {detail}); "
            "check for numbers out of range or inconsistent with each other (in config too)",
        )
    return 500, "internal", f"internal server error ({type(exc).__name__}); the server's log has the details"


def log_unexpected(exc: BaseException, where: str) -> None:
    """Log the traceback of an exception that no check of fathom's anticipated: a 422 from the model code (its
    input should be checked earlier) or a fault of the server."""
    if isinstance(exc, tuple(k for k, _, _ in _KNOWN)):
        return
    status = describe(exc)[0]
    level = logging.WARNING if status < 500 else logging.ERROR
    logger.log(level, "%s: unexpected %s, answered %d", where, type(exc).__name__, status, exc_info=exc)
