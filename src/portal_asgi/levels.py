"""Access levels: `public`, then the configured levels from low to high, carried as cumulative scopes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Levels:
    """The ordered levels of one portal. `names[0]` is always `public`."""

    configured: tuple[str, ...]
    prefix: str = "access:"
    _ranks: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # asked at every request: a dictionary, not a search of the tuple
        object.__setattr__(self, "_ranks", {name: i for i, name in enumerate(self.names)})

    @property
    def names(self) -> tuple[str, ...]:
        return (PUBLIC, *self.configured)

    @property
    def lowest(self) -> str:
        """What every logged-in user holds at least."""
        return self.configured[0]

    @property
    def highest(self) -> str:
        return self.configured[-1]

    def __contains__(self, level: object) -> bool:
        return level in self.names

    def rank(self, level: str) -> int:
        """Position of a level; unknown levels rank below public, so they reach nothing."""
        return self._ranks.get(level, -1)

    def allows(self, held: str | None, required: str) -> bool:
        """True when a user holding `held` (None: anonymous) may reach a mount at `required`."""
        if required == PUBLIC:
            return True
        if held is None:
            return False
        ranks = self._ranks
        need = ranks.get(required)  # None: an unknown level, which nobody reaches
        return need is not None and need >= 1 and ranks.get(held, 0) >= need

    def scopes(self, level: str) -> list[str]:
        """Cumulative scopes: `devel` gives `access:stable access:ea access:devel`."""
        if level not in self.configured:
            return []
        return [self.prefix + name for name in self.configured[: self.configured.index(level) + 1]]

    def highest_in(self, values: Iterable[str], prefix: str | None = None) -> str | None:
        """The highest level named in `values` (scopes, groups or roles), or None."""
        prefix = self.prefix if prefix is None else prefix
        best: str | None = None
        for value in values:
            if not value.startswith(prefix):
                continue
            name = value[len(prefix) :]
            if name in self.configured and (best is None or self.rank(name) > self.rank(best)):
                best = name
        return best
