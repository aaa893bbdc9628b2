"""The command's exit statuses (docs/CLI.md), named once, and the error that carries one."""

from __future__ import annotations

from enum import IntEnum

from wire.codes import ErrorCode


class Exit(IntEnum):
    OK = 0  # done: a listing printed, a finite query complete
    FAILED = 1  # anything else that went wrong (the message says what)
    USAGE = 2  # bad flags or names, or the gateway refused the request as malformed (bad_request, too_large)
    UNREACHABLE = 3  # no gateway answered (at start, or for --retry-for seconds after a drop)
    UNAUTHORIZED = 4  # no token, or the gateway refused it (HTTP 401, or close 4001: it expired)
    FORBIDDEN = 5  # the token does not allow the stream (error forbidden, HTTP 403/421)
    NOT_FOUND = 6  # no such minion (error not_found, HTTP 404)
    INTERRUPTED = 130  # Ctrl-C


# What an error frame's code (or an API error) means for the command; codes not here are retried.
BY_CODE = {
    ErrorCode.BAD_REQUEST: Exit.USAGE,
    ErrorCode.TOO_LARGE: Exit.USAGE,
    ErrorCode.UNAUTHORIZED: Exit.UNAUTHORIZED,
    ErrorCode.FORBIDDEN: Exit.FORBIDDEN,
    ErrorCode.NOT_FOUND: Exit.NOT_FOUND,
}
BY_STATUS = {400: Exit.USAGE, 401: Exit.UNAUTHORIZED, 403: Exit.FORBIDDEN, 404: Exit.NOT_FOUND, 421: Exit.FORBIDDEN}


class CliError(Exception):
    """Stop the command with `status`, telling the user `message` (on stderr)."""

    def __init__(self, status: Exit, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
