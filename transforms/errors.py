"""Errors a user can act on. Each carries a code and says what to do; the CLI prints one line."""


class HypersceneError(Exception):
    """A problem with the input, the options or the environment, explained for the user."""

    code = "E000"

    def __init__(self, message: str):
        super().__init__(f"[{self.code}] {message}")


class InputNotFound(HypersceneError):
    code = "E001"


class EmptyInput(HypersceneError):
    code = "E002"


class ModelNotFound(HypersceneError):
    code = "E003"


class LanguageNotSupported(HypersceneError):
    code = "E004"


class InvalidOption(HypersceneError):
    code = "E005"


class StoreError(HypersceneError):
    code = "E006"


class VerificationFailed(HypersceneError):
    code = "E007"


class StoreBusy(HypersceneError):
    code = "E008"


class StoreDamaged(StoreError):
    """A store version whose manifest or data files are not what it was published as: ``file`` (relative
    to the store) and ``problem`` say which and how."""

    code = "E009"

    def __init__(self, message: str, file: str = "", problem: str = ""):
        super().__init__(message)
        self.file, self.problem = file, problem


class DiskFull(HypersceneError):
    """The disk a store is written on ran out of space (or would, by the estimate made at the start)."""

    code = "E010"
