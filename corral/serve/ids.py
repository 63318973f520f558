"""Ids the service hands out, and the one check of ids that arrive in paths and bodies: an
id is a known prefix and 8-64 letters, digits, '_' or '-', so it can never name a path
outside the service's folders (`../`, `/`, NUL) or smuggle SQL."""
from __future__ import annotations

import re
import secrets

_ID = re.compile(r"^(file|ftjob|ftevent|ftckpt)-[A-Za-z0-9_-]{8,64}$")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def valid(ident, prefix: str) -> bool:
    return isinstance(ident, str) and bool(_ID.match(ident)) and ident.startswith(prefix + "-")
