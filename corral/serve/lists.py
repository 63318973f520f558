"""OpenAI's list shape, `{object: "list", data, has_more, first_id, last_id}`, over a
table page; the client pages by sending `after` = the last id while `has_more` is true."""
from __future__ import annotations

import json

from corral.serve.errors import bad


def limit_of(value: str | None, most: int = 100, default: int = 20) -> int:
    if value is None:
        return default
    try:
        got = int(value)
    except ValueError:
        got = 0
    if not 1 <= got <= most:
        raise bad(f"limit must be an integer from 1 to {most}, got {value!r}", "limit",
                  "invalid_value")
    return got


def listing(store, table: str, where: str, params: tuple, after: str | None, limit: int,
            desc: bool = True, column: str = "obj", make=None) -> dict:
    try:
        rows, more = store.page(table, where, params, after, limit, desc, column)
    except KeyError:
        raise bad(f"after '{after}' is not an id of this list; pass the last id of the "
                  "previous page", "after", "invalid_cursor") from None
    data = [make(r) if make else json.loads(r[0]) for r in rows]
    return page(data, more)


def page(data: list, more: bool = False) -> dict:
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
