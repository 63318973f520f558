"""One registry for every kind of plug-in (methods, tasks): names -> entries, with did-you-mean.

    METHODS = Registry("method"); METHODS.add("sft", method); METHODS.get("stf") -> CorralError
"""
from __future__ import annotations

from corral.core.config import did_you_mean
from corral.core.errors import CorralError


class Registry:
    def __init__(self, kind: str):
        self.kind, self._entries = kind, {}

    def add(self, name: str, entry) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str):
        if name not in self._entries:
            raise CorralError(f"unknown {self.kind} '{name}'"
                              f"{did_you_mean(name, self.names(), self.kind + 's')}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self):
        return list(self._entries.items())

    def __contains__(self, name) -> bool:
        return name in self._entries
