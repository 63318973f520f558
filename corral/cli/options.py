"""The one bridge from argparse to the library: a command's parsed arguments → its typed
options object (a dataclass of `corral.api`). Argument `dest` names equal the options' field
names, so the bridge is generic and an argparse namespace never travels below `cli/`."""
from __future__ import annotations

from dataclasses import fields


def options(cls, args, **given):
    """`cls(**{field: args.field})` for each field the namespace has, `given` overriding."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values.update(given)
    return cls(**values)
