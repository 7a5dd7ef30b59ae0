"""Cognito Sync's error types, as the botocore model ``cognito-sync`` 2014-06-30 declares them.

An :class:`ApiError` becomes a rest-json error response: the HTTP status of its shape, the header
``x-amzn-ErrorType`` and the body ``{"__type": ..., "message": ...}``, which botocore turns into
``client.exceptions.<Type>``.
"""

from __future__ import annotations

#: Error shape -> HTTP status, from the model (``error.httpStatusCode``).
ERROR_STATUS: dict[str, int] = {
    "AlreadyStreamedException": 400,
    "ConcurrentModificationException": 400,
    "DuplicateRequestException": 400,
    "InternalErrorException": 500,
    "InvalidConfigurationException": 400,
    "InvalidLambdaFunctionOutputException": 400,
    "InvalidParameterException": 400,
    "LambdaThrottledException": 429,
    "LimitExceededException": 400,
    "NotAuthorizedException": 403,
    "ResourceConflictException": 409,
    "ResourceNotFoundException": 404,
    "TooManyRequestsException": 429,
    # Not model shapes: what an AWS front end answers for a path no operation serves, and what the
    # emulator answers for the operations it does not implement (see docs/emulator.md).
    "UnknownOperationException": 404,
    "NotImplementedException": 501,
}


class ApiError(Exception):
    """A Cognito Sync error answer; ``error_type`` is one of :data:`ERROR_STATUS`."""

    def __init__(self, error_type: str, message: str) -> None:
        if error_type not in ERROR_STATUS:
            raise ValueError(f"unknown Cognito Sync error type {error_type!r}")
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.error_type]


def invalid(message: str) -> ApiError:
    """``InvalidParameterException`` (400)."""
    return ApiError("InvalidParameterException", message)


def not_found(message: str) -> ApiError:
    """``ResourceNotFoundException`` (404)."""
    return ApiError("ResourceNotFoundException", message)


def conflict(message: str) -> ApiError:
    """``ResourceConflictException`` (409)."""
    return ApiError("ResourceConflictException", message)


def limit_exceeded(message: str) -> ApiError:
    """``LimitExceededException`` (400)."""
    return ApiError("LimitExceededException", message)


def internal(message: str) -> ApiError:
    """``InternalErrorException`` (500)."""
    return ApiError("InternalErrorException", message)
