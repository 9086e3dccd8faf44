"""Level colours (pages/frame.py and static/portal.css): one class per rank whatever the levels
are called, and a palette whose colours differ from each other and read well (WCAG contrast)."""

from __future__ import annotations

import colorsys
import re
from importlib.resources import files

import pytest

from portal_asgi.levels import Levels
from portal_asgi.pages.frame import PALETTE, badge_class, level_classes

CSS = files("portal_asgi").joinpath("static/portal.css").read_text()
RANK_RULE = re.compile(
    r"\.level-rank-(\d+) \{ --level-bg: (#[0-9a-f]{6}); --level-ink: (#[0-9a-f]{6}); \}"
)


def palette() -> dict[int, tuple[str, str]]:
    return {int(rank): (bg, ink) for rank, bg, ink in RANK_RULE.findall(CSS)}


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(one: str, other: str) -> float:
    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def hue(colour: str) -> float:
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[0] * 360


def test_the_default_levels_take_the_first_colours() -> None:
    levels = Levels(("stable", "ea", "devel", "admin"))
    assert [badge_class(levels, name) for name in levels.names] == [
        "level level-public level-rank-0",
        "level level-stable level-rank-1",
        "level level-ea level-rank-2",
        "level level-devel level-rank-3",
        "level level-admin level-rank-4",
    ]


def test_colours_follow_rank_not_name() -> None:
    """Levels are configurable: `admin` second of two is coloured as the second level."""
    levels = Levels(("member", "admin"))
    assert level_classes(levels, "member") == "level-member level-rank-1"
    assert level_classes(levels, "admin") == "level-admin level-rank-2"


def test_the_palette_repeats_past_its_end_and_knows_no_stranger() -> None:
    levels = Levels(tuple(f"l{i}" for i in range(1, PALETTE + 3)))
    assert level_classes(levels, f"l{PALETTE}") == f"level-l{PALETTE} level-rank-{PALETTE}"
    assert level_classes(levels, f"l{PALETTE + 1}") == f"level-l{PALETTE + 1} level-rank-1"
    assert badge_class(levels, "nobody") == "level level-nobody"  # no colour of a real level


def test_the_stylesheet_has_a_colour_for_every_rank() -> None:
    assert sorted(palette()) == list(range(PALETTE + 1))


@pytest.mark.parametrize("rank", range(PALETTE + 1))
def test_badge_text_reads_well_on_its_background(rank: int) -> None:
    """WCAG 2.1 AA for small text: 4.5:1 (badges are small, bold capitals)."""
    background, ink = palette()[rank]
    assert contrast(background, ink) >= 4.5, (rank, background, ink)
    assert contrast("#ffffff", ink) >= 4.5  # the tiles' top border and dot on white cards


def test_neighbouring_levels_have_clearly_different_hues() -> None:
    """Told apart at a glance: every two inks at least 25 degrees of hue apart."""
    inks = {rank: ink for rank, (_, ink) in palette().items()}
    for rank, ink in inks.items():
        for other, other_ink in inks.items():
            if other > rank:
                apart = abs(hue(ink) - hue(other_ink))
                assert min(apart, 360 - apart) >= 25, (rank, other, ink, other_ink)
