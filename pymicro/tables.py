"""Plain aligned text tables, shared by every layer that prints one (the CLI, the store, reports)."""

from __future__ import annotations


def table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = right if right is not None else set(range(1, len(headers)))
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
