"""Errors raised by the Communications Mining hook and operators.

Every API error carries the HTTP status code, the route (method and path, never the host's
credentials) and the server's message, so callers can catch precisely and logs say what failed.
No message ever contains the API token.

With Airflow installed they are :class:`AirflowException` (and :class:`AirflowFailException` for
errors a retry cannot fix, so a task fails at once). The client code and the emulator also run
where Airflow is not installed (a gateway, a test harness): there the same classes derive from
stand-ins, so ``except CommunicationsMiningError`` works the same way everywhere.
"""

from __future__ import annotations

import warnings

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # the client code and the emulator, without Airflow

    class AirflowException(Exception):  # type: ignore[no-redef]
        """Stand-in for Airflow's base exception where Airflow is not installed."""

    class AirflowFailException(AirflowException):  # type: ignore[no-redef]
        """Stand-in for Airflow's "fail without retrying" exception where Airflow is not installed."""


try:
    from airflow.exceptions import AirflowProviderDeprecationWarning
except ImportError:  # the client code and the emulator, without Airflow

    class AirflowProviderDeprecationWarning(DeprecationWarning):  # type: ignore[no-redef]
        """Stand-in for Airflow's warning of a provider's deprecated name where Airflow is not installed."""


#: What every deprecation warning of this provider says (the test configuration turns it into an error).
DEPRECATED_SINCE = "deprecated since airflow-provider-cm 0.2.0"


def warn_deprecated(old: str, new: str, removed_in: str = "0.3", stacklevel: int = 3) -> None:
    """Warn, as the official providers do (:class:`AirflowProviderDeprecationWarning`), that ``old`` is now ``new``.

    ``stacklevel`` 3 points the warning at the caller of the deprecated property or function.
    """
    warnings.warn(
        f"{old} is {DEPRECATED_SINCE} and removed in {removed_in}: use {new}",
        AirflowProviderDeprecationWarning,
        stacklevel=stacklevel,
    )


class CommunicationsMiningError(AirflowException):
    """Base class of every error raised by this provider."""


class CommunicationsMiningApiError(CommunicationsMiningError):
    """The API answered with an error, or with a body that is not a valid response.

    :param status_code: HTTP status code of the response.
    :param route: ``"METHOD /path"`` of the request, relative to the endpoint.
    :param message: the server's ``message`` field, or a description of the malformed body.
    :param retry_after: seconds the server asked to wait (``Retry-After``), if it said.
    """

    def __init__(self, status_code: int, route: str, message: str, *, retry_after: float | None = None) -> None:
        # An int, not AirflowException's HTTPStatus class default: APIs send codes HTTPStatus lacks.
        self.status_code = status_code  # type: ignore[assignment]
        self.route = route
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{route} failed with HTTP {status_code}: {message}")

    def __reduce__(self):  # keep the fields when the error is pickled (e.g. by a process pool)
        return (_rebuild_api_error, (type(self), self.status_code, self.route, self.message, self.retry_after))


def _rebuild_api_error(cls, status_code, route, message, retry_after):
    return cls(status_code, route, message, retry_after=retry_after)


class CommunicationsMiningBadRequestError(CommunicationsMiningApiError):
    """The API refused the request as invalid (HTTP 400, 413 or 422): resending it will not help."""


class CommunicationsMiningAuthError(CommunicationsMiningApiError):
    """The token is missing, wrong or lacks a permission (HTTP 401 or 403)."""


class CommunicationsMiningNotFoundError(CommunicationsMiningApiError):
    """The route or the named resource (project, source, dataset, comment) does not exist (HTTP 404)."""


class CommunicationsMiningConflictError(CommunicationsMiningApiError):
    """The resource exists with different data (HTTP 409)."""


class CommunicationsMiningRateLimitError(CommunicationsMiningApiError):
    """The API throttled the client (HTTP 429)."""


class CommunicationsMiningServerError(CommunicationsMiningApiError):
    """The platform failed (HTTP 5xx)."""


class CommunicationsMiningProtocolError(CommunicationsMiningApiError):
    """The response body is not the JSON envelope the API documents."""


class CommunicationsMiningTagError(CommunicationsMiningError):
    """A model tag cannot be resolved: unknown tag, or a ``model-tags`` response of unknown shape."""


class CommunicationsMiningModelDriftError(AirflowFailException):
    """A model tag points to another version than the one a DAG expects.

    :param tag: the tag, e.g. ``"live"``.
    :param expected: the version the DAG was built for.
    :param actual: the version the tag points to now.
    """

    def __init__(self, dataset: str, tag: str, expected: int, actual: int) -> None:
        self.dataset = dataset
        self.tag = tag
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"model tag {tag!r} of {dataset} points to version {actual}, not the expected version {expected}: "
            "review the new model, then update expected_version"
        )


class CommunicationsMiningConnectionError(CommunicationsMiningError):
    """No response could be had: the connection failed, dropped or timed out on every attempt.

    :param route: ``"METHOD /path"`` of the request.
    :param reason: what went wrong on the last attempt.
    :param sent: whether the request may have reached the server (``False`` for a refused or
        timed-out connect, which is always safe to retry).
    :param permanent: whether no retry can help (a host name that does not resolve, a TLS
        verification failure, an ``https://`` endpoint on a plain-HTTP server); the reason then
        says what to change.
    """

    def __init__(self, route: str, reason: str, *, sent: bool = True, permanent: bool = False) -> None:
        self.route = route
        self.reason = reason
        self.sent = sent
        self.permanent = permanent
        super().__init__(f"{route} failed: {reason}")

    def __reduce__(self):
        return (_rebuild_connection_error, (type(self), self.route, self.reason, self.sent, self.permanent))


def _rebuild_connection_error(cls, route, reason, sent, permanent=False):
    return cls(route, reason, sent=sent, permanent=permanent)


class CommunicationsMiningConfigError(CommunicationsMiningError):
    """The connection cannot work as configured (no credentials, a bad ``verify`` or proxy map, ...).

    Raised before any request is sent; the message says which setting to change.
    """


class CommunicationsMiningInputError(AirflowFailException):
    """An input file holds a record that cannot be uploaded.

    Subclasses :class:`AirflowFailException`: retrying the task cannot fix the file, so Airflow
    fails it at once. ``problems`` lists every problem found as ``(line, field, message)``.
    """

    def __init__(self, path: str, problems: list[tuple[int, str, str]], total: int | None = None) -> None:
        self.path = path
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = "\n".join(f"  {path}:{line}: {field}: {message}" for line, field, message in problems)
        more = f"\n  ... and {self.total - len(problems)} more" if self.total > len(problems) else ""
        super().__init__(f"{self.total} invalid record(s) in {path}:\n{shown}{more}")


class CommunicationsMiningInputChangedError(CommunicationsMiningError):
    """An input file changed while it was read (written to, replaced or cut short): nothing was sent.

    Not an :class:`AirflowFailException`: once nothing writes to the file, a retry reads it
    again. ``path`` is the file, ``reason`` what differed (its size, its modification time, or
    the bytes two reads of it gave).
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path} changed while it was read ({reason}): nothing was sent; upload it once nothing writes to it"
        )

    def __reduce__(self):  # keep the fields when the error is pickled
        return (type(self), (self.path, self.reason))


class CommunicationsMiningRejectedRecordsError(AirflowFailException):
    """The API refused some comments, or the annotations of some stored comments; every other record was uploaded.

    :param dead_letter_path: the file that holds the refused records with the server's reasons.
    :param refused_ids: ids of comments the API refused: not stored, not billed.
    :param unannotated_ids: ids of comments that were stored (and billed if new or their text
        changed) but whose annotations (labels, general fields) the API refused, so they were not written.

    ``unlabelled_ids`` and ``labels_rejected`` are the deprecated 0.1 names of ``unannotated_ids``
    and ``annotations_rejected`` (removed in 0.3).
    """

    def __init__(self, dead_letter_path: str, refused_ids: list[str], unannotated_ids: list[str]) -> None:
        self.dead_letter_path = dead_letter_path
        self.refused_ids = refused_ids
        self.unannotated_ids = unannotated_ids
        self.rejected = len(refused_ids)
        self.annotations_rejected = len(unannotated_ids)
        self.sample_ids = refused_ids + unannotated_ids
        parts = []
        if refused_ids:
            parts.append(f"the API refused {len(refused_ids)} comment(s) ({_some(refused_ids)}), which were not stored")
        if unannotated_ids:
            parts.append(
                f"{len(unannotated_ids)} comment(s) ({_some(unannotated_ids)}) were stored (and billed if new or "
                "their text changed) but the API refused their annotations, which were not written"
            )
        super().__init__(
            f"{'; '.join(parts)}. Every other record was uploaded. The records and the reasons are in "
            f"{dead_letter_path}."
        )

    def __reduce__(self):  # keep the fields when the error is pickled
        return (type(self), (self.dead_letter_path, self.refused_ids, self.unannotated_ids))

    @property
    def unlabelled_ids(self) -> list[str]:
        """Deprecated (removed in 0.3): :attr:`unannotated_ids`; warns AirflowProviderDeprecationWarning."""
        warn_deprecated(f"{type(self).__name__}.unlabelled_ids", "unannotated_ids")
        return self.unannotated_ids

    @property
    def labels_rejected(self) -> int:
        """Deprecated (removed in 0.3): :attr:`annotations_rejected`; warns AirflowProviderDeprecationWarning."""
        warn_deprecated(f"{type(self).__name__}.labels_rejected", "annotations_rejected")
        return self.annotations_rejected


class CommunicationsMiningRejectedEmailsError(AirflowFailException):
    """Some e-mails were not uploaded; every other one was.

    :param dead_letter_path: the file that holds each e-mail not uploaded (file, message index,
        reason), or ``None`` if it could not be written.
    :param unreadable: ``"<file>#<index>"`` of e-mails that could not be read or break the API's
        limits (found before anything was sent).
    :param refused_ids: comment ids of e-mails the API refused: not stored, not billed.
    """

    def __init__(self, dead_letter_path: str | None, unreadable: list[str], refused_ids: list[str]) -> None:
        self.dead_letter_path = dead_letter_path
        self.unreadable = unreadable
        self.refused_ids = refused_ids
        parts = []
        if unreadable:
            parts.append(
                f"{len(unreadable)} e-mail(s) could not be read or break the API's limits ({_some(unreadable)})"
            )
        if refused_ids:
            parts.append(f"the API refused {len(refused_ids)} e-mail(s) ({_some(refused_ids)}), which were not stored")
        super().__init__(
            f"{'; '.join(parts)}. Every other e-mail was uploaded. The e-mails and the reasons are in "
            f"{dead_letter_path}."
        )

    def __reduce__(self):  # keep the fields when the error is pickled
        return (type(self), (self.dead_letter_path, self.unreadable, self.refused_ids))


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
