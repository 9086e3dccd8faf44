"""What a settings reload may change, and what it changed: two `Settings` compared.

`[[mount]]` tables (every key) and `[portal] title` change while the portal runs. Every other
key is held by parts a reload keeps (the database, the signing keys, the identity provider, the
listeners, the levels every user and token is judged by...), so a file that changes one of them
is refused as a whole, naming the keys, and the running configuration stays (docs/settings.md,
"Reloading settings")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .exceptions import SettingsError
from .settings import MountSettings, Settings

# outside [[mount]]: the keys a reload applies (a new route table and new pages carry them)
RELOADABLE = frozenset({"portal.title"})
# what a mount may change and keep its running app (and its lifespan, threads, open sockets):
# the route table reads these, the app never sees them
ROUTE_ONLY = ("level", "title", "description", "csrf", "rules", "index")


@dataclass(frozen=True, slots=True)
class MountChange:
    path: str
    keys: tuple[str, ...]  # the mount's keys that changed: "level", "title", "app"...


@dataclass(frozen=True, slots=True)
class Changes:
    """What a reload changed: mount paths added and removed, mounts changed, other keys."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[MountChange, ...] = ()
    portal: tuple[str, ...] = ()  # keys outside [[mount]] that changed: "portal.title"

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.portal)

    def summary(self) -> str:
        """One line for the log and the admin area."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        if self.changed:
            parts.append(
                "changed "
                + ", ".join(f"{change.path} ({', '.join(change.keys)})" for change in self.changed)
            )
        if self.portal:
            parts.append("changed " + ", ".join(self.portal))
        return "; ".join(parts) or "no changes"

    def as_json(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [{"path": c.path, "keys": list(c.keys)} for c in self.changed],
            "portal": list(self.portal),
        }


def _differences(prefix: str, old: object, new: object) -> list[str]:
    """The dotted keys whose values differ. Settings tables (the `...Settings` dataclasses) are
    compared key by key; anything else (a list, a key source, a table present in one file only)
    as one value."""
    if old == new:
        return []
    kind = type(old)
    if kind is type(new) and dataclasses.is_dataclass(kind) and kind.__name__.endswith("Settings"):
        found = []
        for field in dataclasses.fields(kind):
            key = f"{prefix}.{field.name}" if prefix else field.name
            found += _differences(key, getattr(old, field.name), getattr(new, field.name))
        return found
    return [prefix]


def needs_restart(old: Settings, new: Settings) -> list[str]:
    """The keys outside `[[mount]]` that changed and that only a restart applies."""
    found = []
    for field in dataclasses.fields(Settings):
        if field.name in ("file", "mounts"):
            continue
        found += _differences(field.name, getattr(old, field.name), getattr(new, field.name))
    return [key for key in found if key not in RELOADABLE]


def refuse_restart_only(old: Settings, new: Settings) -> None:
    """SettingsError naming the keys a reload cannot apply, if the new file changes any."""
    keys = needs_restart(old, new)
    if keys:
        raise SettingsError(
            new.file,
            ", ".join(keys),
            "cannot change while the portal runs (restart it to apply); nothing was reloaded",
        )


def compare(old: Settings, new: Settings) -> Changes:
    before = {mount.path: mount for mount in old.mounts}
    after = {mount.path: mount for mount in new.mounts}
    changed = []
    for path, mount in after.items():
        if path in before:
            keys = [key for key in _differences("", before[path], mount) if key != "index"]
            if keys:
                changed.append(MountChange(path, tuple(keys)))
    portal = [key for key in _differences("", old, new) if key in RELOADABLE]
    return Changes(
        added=tuple(path for path in after if path not in before),
        removed=tuple(path for path in before if path not in after),
        changed=tuple(changed),
        portal=tuple(portal),
    )


def same_app(old: MountSettings, new: MountSettings) -> bool:
    """Whether `new` can keep the app running for `old`: nothing but route-only keys differ."""
    return old.path == new.path and (
        dataclasses.replace(old, **{key: getattr(new, key) for key in ROUTE_ONLY}) == new
    )
