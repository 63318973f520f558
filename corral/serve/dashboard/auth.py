"""The dashboard's key check. A browser cannot send `Authorization: Bearer`, so with API keys
configured the page asks for a key once (/dashboard/login) and keeps it in an HttpOnly,
SameSite=Strict cookie; scripts may still send the Bearer header. No keys: no check (the
caller keeps the server on loopback, as `corral serve` does)."""
from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

COOKIE = "corral_dashboard_key"
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>corral dashboard</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css"></head><body>
<main class="login"><h1>corral dashboard</h1>{note}
<form method="post" action="/dashboard/login"><label>API key
<input type="password" name="key" autofocus></label> <button>open</button></form>
</main></body></html>"""


class Guard:
    def __init__(self, keys: tuple):
        self.keys = [k.encode() for k in keys]

    def ok(self, request: Request) -> bool:
        if not self.keys:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = request.cookies.get(COOKIE, "")
        return self.valid(given.strip())

    def valid(self, given: str) -> bool:
        return any(hmac.compare_digest(given.encode(), k) for k in self.keys)

    def page(self, request: Request) -> None:
        if not self.ok(request):
            raise HTTPException(303, "log in first", headers={"location": "/dashboard/login"})

    def api(self, request: Request) -> None:
        if not self.ok(request):
            raise HTTPException(401, "no valid API key: open /dashboard/login or send "
                                "'Authorization: Bearer KEY'", headers={"www-authenticate":
                                                                         "Bearer"})

    def add_login(self, router) -> None:
        @router.get("/dashboard/login", include_in_schema=False)
        def login_form():
            return HTMLResponse(LOGIN_PAGE.format(note=""))

        @router.post("/dashboard/login", include_in_schema=False)
        async def login(request: Request):
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            key = (form.get("key") or [""])[0].strip()
            if self.keys and not self.valid(key):
                return HTMLResponse(LOGIN_PAGE.format(
                    note="<p class='bad'>That key is not one this server accepts.</p>"),
                    status_code=401)
            reply = RedirectResponse("/", status_code=303)
            reply.set_cookie(COOKIE, key, httponly=True, samesite="strict")
            return reply
