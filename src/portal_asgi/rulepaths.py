"""How a path inside a mount is read for the mount's rules (`[[mount]] rules`): one reading, used
by settings.py for the rule paths and by routes.py for every request to a mount with rules.

A rule path covers itself and everything below it, on segment boundaries. The products and the
servers behind them do not all read a path alike: some fold case, drop `;parameters`, strip
trailing dots and spaces, merge slashes, map look-alike characters or decode twice. So the rules
read a path the loosest way any of them might, and what such a product could still read another
way is refused:

- case and look-alikes are folded (ASCII lower case; other text NFKC, then casefold):
  `/Admin`, `/ADMIN` and `/admin` in fullwidth letters are all `/admin`;
- a segment's `;parameters` are dropped and its trailing dots and spaces stripped (`/admin;x`,
  `/admin.`, `/admin%20` are `/admin`); empty segments are skipped (`//admin`, `/admin/`);
- None (the request answers 400) when a segment is left empty, `.` or `..` by these steps
  (`..;`, `...`, `;x`), when the path still holds a percent-escape after the server decoded it
  once (`%2561dmin`, sent to reach a product that decodes twice), or bytes that were not UTF-8.

Dot segments, encoded slashes, backslashes and NUL were refused for every path before routing
(`middleware/paths.py`).
"""

from __future__ import annotations

import re
import unicodedata

_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_UNDECODABLE = "\ufffd"  # what the server made of bytes that were not UTF-8


def read(path: str) -> str | None:
    """The rule key of `path`, a path inside a mount (`"/Admin//x;y"` reads `"/admin/x"`); `""`
    for the mount's own root; None when the path cannot be read one way."""
    if path.isascii():
        folded = path.lower()
    else:
        if _UNDECODABLE in path:
            return None
        folded = unicodedata.normalize("NFKC", path).casefold().replace("\\", "/")
    if "%" in folded and _ESCAPE.search(folded):
        return None
    segments = []
    for segment in folded.split("/"):
        if not segment:
            continue
        kept = segment.partition(";")[0].strip(" ").rstrip(". ")
        if not kept:
            return None
        segments.append(kept)
    return "/" + "/".join(segments) if segments else ""


def covers(rule: str, key: str) -> bool:
    """Whether the rule key `rule` covers the path key `key`: the same, or below it."""
    return key == rule or key.startswith(rule + "/")
