"""How a build's stream reads when stages run concurrently.

A build of one stage reads as Docker's classic builder's (``Step 2/5 : RUN ...``). When
several stages build at once their lines interleave, so every line of a stage's output is
prefixed with the stage (``[builder 2/5] RUN ...`` for a step, ``[builder] ...`` for the
rest), as BuildKit's plain progress does. A RUN's stderr is wrapped in ``ESC[91m``...
``ESC[0m`` (Docker's ``streamformatter.NewStderrWriter``).
"""

from __future__ import annotations

from typing import Any

STDERR_START = "\x1b[91m"
STDERR_END = "\x1b[0m"


def stderr_text(text: str) -> str:
    """A RUN's stderr as Docker marks it in the build stream."""
    return f"{STDERR_START}{text}{STDERR_END}"


class StageOutput:
    """Formats one stage's messages; ``prefixed`` when several stages build at once."""

    def __init__(self, label: str, total: int, prefixed: bool) -> None:
        self.label = label
        self.total = total
        self.prefixed = prefixed
        self._line_start = True

    def step(self, n: int, original: str) -> dict[str, Any]:
        """The line announcing step ``n`` of the stage."""
        self._line_start = True
        if self.prefixed:
            return {"stream": f"[{self.label} {n}/{self.total}] {original}\n"}
        return {"stream": f"Step {n}/{self.total} : {original}\n"}

    def message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Any other message of the stage: its ``stream`` text prefixed line by line."""
        text = msg.get("stream")
        if not self.prefixed or not isinstance(text, str) or not text:
            return msg
        out = []
        for piece in text.splitlines(keepends=True):
            if self._line_start:
                out.append(f"[{self.label}] ")
            out.append(piece)
            self._line_start = piece.endswith("\n")
        return dict(msg, stream="".join(out))
