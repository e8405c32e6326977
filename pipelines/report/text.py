"""Text on the report page: store texts as one readable line, HTML escaping, and number labels."""

from __future__ import annotations

import html

from hyperscene.pipelines.cliutil import visible

TEXT_CHARS = 240  # unit and gist texts are cut to this many characters on the page


def clean(text: str | None, limit: int = TEXT_CHARS) -> str:
    """One readable line: whitespace runs as one space, control characters as \\xNN, cut to
    ``limit`` characters with an ellipsis. Not escaped: :func:`esc` does that where it is written."""
    text = " ".join((text or "").split())
    text = visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def num(v: float) -> str:
    """A tick or value label: integers with thousands separators, others with up to 3 significant digits."""
    if v == 0:
        return "0"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"
