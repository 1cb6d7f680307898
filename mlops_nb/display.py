"""Rich views of a pipeline's DAG: Mermaid for JupyterLab, SVG for other front ends, plain text."""

from __future__ import annotations

from html import escape
from typing import Any

from .pipeline import Pipeline

__all__ = ["DagView", "STATE_COLOURS"]

#: Fill and stroke per step state, shared by the Mermaid, SVG and live views. The last three
#: are what a live view shows during and after a run.
STATE_COLOURS = {
    "up to date": ("#d1fae5", "#047857"),
    "stale": ("#fef3c7", "#b45309"),
    "never run": ("#e5e7eb", "#4b5563"),
    "failed": ("#fee2e2", "#b91c1c"),
    "running": ("#dbeafe", "#1d4ed8"),
    "ran": ("#bbf7d0", "#15803d"),
    "cached": ("#ccfbf1", "#0f766e"),
}


class DagView:
    """A snapshot of a pipeline's steps, edges and states that notebooks display richly.

    Examples
    --------
    >>> import tempfile
    >>> from mlops_nb import Pipeline, Store
    >>> pipe = Pipeline("demo", store=Store(tempfile.mkdtemp()))
    >>> _ = pipe.define_cell("load", "raw = [1, 2, 3]")
    >>> _ = pipe.define_cell("total", "total = sum(raw)")
    >>> print(DagView(pipe).text())
    Pipeline 'demo': 2 steps
      load   [never run]  → raw
      total  [never run]  → total  (after load)
    """

    def __init__(self, pipeline: Pipeline, direction: str = "LR") -> None:
        self.name = pipeline.name
        self.direction = direction
        self.steps = pipeline.order()
        states = pipeline.states()
        self.state = {name: states[name]["state"] for name in self.steps}
        self.outputs = {name: pipeline.steps[name].outputs for name in self.steps}
        #: Seconds per step, shown under its state when known (live views fill it in).
        self.seconds: dict[str, float] = {}
        self.edges: list[tuple[str, str, list[str]]] = []
        for name in self.steps:
            step = pipeline.steps[name]
            for upstream in pipeline.upstream(name):
                passed = [r for r in step.reads if r in pipeline.steps[upstream].outputs]
                self.edges.append((upstream, name, passed))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/vnd.mermaid": self.mermaid(),
            "image/svg+xml": self.svg(),
            "text/plain": self.text(),
        }

    def __repr__(self) -> str:
        return self.text()

    # -- text ------------------------------------------------------------------------------------
    def text(self) -> str:
        """One line per step: name, state, outputs and the steps it runs after."""
        lines = [f"Pipeline {self.name!r}: {len(self.steps)} step{'s' * (len(self.steps) != 1)}"]
        width = max((len(n) for n in self.steps), default=0)
        state_width = max((len(s) for s in self.state.values()), default=0) + 2
        for name in self.steps:
            after = [up for up, down, _ in self.edges if down == name]
            line = f"  {name:<{width}}  {'[' + self.state[name] + ']':<{state_width}}  → "
            line += ", ".join(self.outputs[name]) or "(no outputs)"
            if after:
                line += f"  (after {', '.join(after)})"
            lines.append(line)
        return "\n".join(lines)

    # -- Mermaid -----------------------------------------------------------------------------------
    def mermaid(self) -> str:
        """A Mermaid flowchart; edges are labelled with the variables passed along them."""
        ids = {name: f"s{index}" for index, name in enumerate(self.steps)}
        lines = [f"flowchart {self.direction}"]
        for name in self.steps:
            label = f"{name}<br/>{self.state[name]}"
            lines.append(f'    {ids[name]}["{_mermaid_text(label)}"]')
        for upstream, downstream, passed in self.edges:
            arrow = f"-->|{_mermaid_text(', '.join(passed))}|" if passed else "-->"
            lines.append(f"    {ids[upstream]} {arrow} {ids[downstream]}")
        for state, (fill, stroke) in STATE_COLOURS.items():
            members = [ids[n] for n in self.steps if self.state[n] == state]
            if members:
                css = state.replace(" ", "_")
                lines.append(f"    classDef {css} fill:{fill},stroke:{stroke},color:#111827")
                lines.append(f"    class {','.join(members)} {css}")
        return "\n".join(lines)

    # -- SVG -------------------------------------------------------------------------------------
    def svg(self) -> str:
        """A self-contained SVG drawing: steps in columns by depth, arrows between them."""
        box_w, box_h, gap_x, gap_y, pad = 150, 46, 70, 22, 16
        depth: dict[str, int] = {}
        for name in self.steps:  # already in dependency order
            depth[name] = max((depth[u] + 1 for u, d, _ in self.edges if d == name), default=0)
        columns: dict[int, list[str]] = {}
        for name in self.steps:
            columns.setdefault(depth[name], []).append(name)
        position: dict[str, tuple[float, float]] = {}
        for column, names in columns.items():
            for row, name in enumerate(names):
                if self.direction == "LR":
                    position[name] = (pad + column * (box_w + gap_x), pad + row * (box_h + gap_y))
                else:
                    position[name] = (pad + row * (box_w + gap_y), pad + column * (box_h + gap_x))
        width = max((x for x, _ in position.values()), default=0) + box_w + 2 * pad
        height = max((y for _, y in position.values()), default=0) + box_h + 2 * pad
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>',
        ]
        for upstream, downstream, _ in self.edges:
            (x1, y1), (x2, y2) = position[upstream], position[downstream]
            if self.direction == "LR":
                start, end = (x1 + box_w, y1 + box_h / 2), (x2, y2 + box_h / 2)
            else:
                start, end = (x1 + box_w / 2, y1 + box_h), (x2 + box_w / 2, y2)
            parts.append(
                f'<line x1="{start[0]:.0f}" y1="{start[1]:.0f}" x2="{end[0]:.0f}" y2="{end[1]:.0f}" '
                f'stroke="#6b7280" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
        for name in self.steps:
            x, y = position[name]
            state = self.state[name]
            fill, stroke = STATE_COLOURS[state]
            caption = f"{state} · {self.seconds[name]:.2f} s" if name in self.seconds else state
            parts.append(
                f'<g data-step="{escape(name)}" data-state="{escape(state)}">'
                f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="8" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
                f'<text x="{x + box_w / 2:.0f}" y="{y + 19:.0f}" text-anchor="middle" '
                f'font-weight="bold">{escape(name)}</text>'
                f'<text x="{x + box_w / 2:.0f}" y="{y + 35:.0f}" text-anchor="middle" '
                f'fill="{stroke}">{escape(caption)}</text></g>'
            )
        parts.append("</svg>")
        return "".join(parts)


def _mermaid_text(text: str) -> str:
    """Escape what would end a Mermaid label early."""
    return text.replace('"', "#quot;").replace("|", "#124;")
