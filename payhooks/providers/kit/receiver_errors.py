"""Receiver errors, each carrying the HTTP status it is answered with (one place answers
them all: ``_reject`` in service/handlers.py; a request handler, not a middleware)."""


class WebhookError(Exception):
    status = 400
    code = "bad_request"
    #: Set when the request's body was left unread: answer, then close the connection.
    close_connection = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidSignature(WebhookError):
    code = "invalid_signature"


class MalformedPayload(WebhookError):
    code = "malformed_payload"


class InvalidPayload(WebhookError):
    """Well-formed JSON that breaks the published schema: 422 with every complaint."""

    status = 422
    code = "invalid_payload"

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


class UnknownUrlToken(WebhookError):
    """The secret of ours a signature-less provider's URL ends with is not one we set: the
    URL is answered as if it did not exist, and the body is left unread."""

    status = 404
    code = "unknown_url_token"
    close_connection = True


class UnsupportedMediaType(WebhookError):
    status = 415
    code = "unsupported_media_type"


class BodyTooLarge(WebhookError):
    status = 413
    code = "body_too_large"


class QueueUnavailable(WebhookError):
    """Redis did not accept the job: the provider must retry, so we answer 503."""

    status = 503
    code = "queue_unavailable"


class SignedButUnreadable(MalformedPayload):
    """The signature matched, then the provider's SDK could not read the body (it checks
    the signature first, then parses). Verified: kept and acknowledged, never refused."""
