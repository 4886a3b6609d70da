"""The errors the emulator answers with: an HTTP status and the envelope's message."""

from __future__ import annotations


class ApiError(Exception):
    """An error the emulator answers with: HTTP status and the envelope's message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def not_found() -> ApiError:
    """The API's answer for an unknown route or resource."""
    return ApiError(404, "404 Not Found")


def bad_request(message: str) -> ApiError:
    """A request the API refuses as malformed (HTTP 400)."""
    return ApiError(400, message)


def conflict(message: str) -> ApiError:
    """A request that contradicts what is stored (HTTP 409)."""
    return ApiError(409, message)
