"""The error a pipeline file raises: where (file and line), which key, what is wrong, the fix."""

from __future__ import annotations

from collections.abc import Sequence

from streamplug.errors import ConfigError
from streamplug.pipeline.locate import PathElement, format_path


class PipelineConfigError(ConfigError):
    """A pipeline file is malformed, names something not installed, or sets a value the
    connector rejects. ``str()`` reads ``pipeline.toml:12: source.topics: <problem>; fix: <fix>``.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: Sequence[PathElement] = (),
        fix: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.problem = problem
        self.key_path = tuple(path)
        self.key = format_path(path)
        self.fix = fix
        self.file = file
        self.line = line
        super().__init__(self._message(), option=self.key or None)

    def _message(self) -> str:
        where = self.file or "<pipeline>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        text += self.problem
        if self.fix:
            text += f"; fix: {self.fix}"
        return text

    def located(self, file: str, line: int | None) -> PipelineConfigError:
        """The same error placed in ``file`` at ``line`` (the loader fills these in)."""
        return PipelineConfigError(
            self.problem,
            path=self.key_path,
            fix=self.fix,
            file=file,
            line=self.line if self.line is not None else line,
        )
