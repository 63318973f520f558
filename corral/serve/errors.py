"""OpenAI error objects: `{"error": {"message", "type", "param", "code"}}` with the status
codes the official client maps to its exceptions (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 413, 422, 500 InternalServerError). Errors a retry
cannot fix carry `x-should-retry: false`, so the client does not resend them; 409 is never
used (the client retries it), state errors are 400."""
from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
         404: "invalid_request_error", 405: "invalid_request_error",
         413: "invalid_request_error", 415: "invalid_request_error",
         422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
         503: "server_error"}
TRANSIENT = {408, 429, 500, 502, 503, 504}


class APIError(Exception):
    """One OpenAI-style error: status, a one-sentence message naming the field and the fix."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def not_found(what: str, ident: str, param: str | None = None) -> APIError:
    return APIError(404, f"no {what} with id '{ident}'; list them with GET /v1/"
                    f"{ {'file': 'files', 'model': 'models'}.get(what, 'fine_tuning/jobs') }",
                    param, f"{what.replace(' ', '_')}_not_found")


def error_body(status: int, message: str, param=None, code=None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_headers(status: int) -> dict:
    return {} if status in TRANSIENT else {"x-should-retry": "false"}


def error_response(status: int, message: str, param=None, code=None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status,
                        headers=error_headers(status))


def install(app) -> None:
    """Every error the app can raise answers as an OpenAI error object."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        if exc.status_code == 404 and exc.detail == "Not Found":  # no such route
            return error_response(404, f"unknown route {request.method} {request.url.path}; "
                                  "see docs/serve.md for the routes", None, "unknown_url")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on "
                                  f"{request.url.path}", None, "method_not_allowed")
        response = error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # a redirect's location, www-authenticate
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(400, f"invalid value for '{param}': {first.get('msg', '')}",
                              param, "invalid_value")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        return error_response(500, f"internal error ({type(exc).__name__}); the server keeps "
                              "running; the request may be retried", None, "server_error")
