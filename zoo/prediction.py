"""One input's result: a Prediction (typed answer) or a Failure (why it could not be predicted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.printable import printable, shown

if TYPE_CHECKING:
    from PIL import Image

    from zoo.pipeline.answers import Answer

# zoo.pipeline.render and .answers (and the decoders they import) load on first use, not with this
# module: `zoo.load()` imports it, and a cold load should not pay for rendering (issue 15).


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one input: `str()` is the CLI's text, `save()` what `zoo predict --save` writes."""

    input: str
    model: str
    provider: str
    task: str
    predictions: Answer

    def to_dict(self) -> dict[str, Any]:
        """Exactly one row of `zoo predict --json`."""
        return {"input": self.input, "model": self.model, "provider": self.provider, "task": self.task,
                "predictions": self.predictions.to_dict()}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Prediction:
        """Rebuild a Prediction from its to_dict() form (rows back from Ray workers)."""
        from zoo.pipeline.answers import from_plain

        return cls(str(row["input"]), str(row["model"]), str(row["provider"]), str(row["task"]),
                   from_plain(str(row["task"]), row["predictions"]))

    def __str__(self) -> str:
        from zoo.pipeline import render

        return render.text(render.Header(self.input, self.model, self.provider), self.predictions)

    def annotated(self, original: Image.Image | None = None) -> Image.Image:
        """The picture of this answer: boxes on the photo, a segmentation overlay, or the output image.

        `original` defaults to the input file, opened again.
        """
        from zoo.pipeline import render

        if original is None:
            from zoo.pipeline.images import open_image

            original = open_image(self.input)
        return render.annotated(self.predictions, original)

    def save(self, path: str | Path, original: Image.Image | None = None) -> Path:
        """Write annotated() to `path` (the format follows its extension); returns the path."""
        target = Path(path)
        self.annotated(original).save(target)
        return target

    def _repr_html_(self) -> str:
        """Notebook view: the text table, with the annotated picture inline where there is one."""
        from zoo.pipeline import render

        picture = None
        if render.has_picture(self.predictions):
            try:
                picture = self.annotated()
            except Exception:  # the input may be an array or gone; the table alone still says everything
                picture = None
        return render.html(render.Header(self.input, self.model, self.provider), self.predictions, picture)


@dataclass(frozen=True, slots=True)
class Failure:
    """An input that could not be predicted, and why."""

    input: str
    model: str
    error: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.input, "model": self.model, "error": self.error}
        if self.hint:
            out["hint"] = self.hint
        return out

    def __str__(self) -> str:
        return f"{shown(self.input)}  error: {printable(self.error)}"


Result = Prediction | Failure
