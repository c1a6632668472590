"""Errors a user can act on. Each message names the problem and what to do about it."""


class MedftError(Exception):
    """Base class: the CLI and the pytest plugin print these as one line, without a traceback."""


class DataError(MedftError):
    """A dataset file is missing, unreadable or malformed."""


class DatasetNotFoundError(DataError):
    """The dataset file is not on disk and could not be downloaded."""


class UnknownNameError(MedftError, KeyError):
    """An unknown dataset, backbone, strategy or tier name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsError(MedftError):
    """Pretrained weights are missing or cannot be loaded."""


class NotApplicable(MedftError):
    """The strategy does not apply to this backbone or task (e.g. norm-only tuning of a network without
    normalisation layers): the cell is skipped with this reason, never run as something else."""


class RecordError(MedftError):
    """A result record is malformed or does not match the schema."""


class ResultsWriteError(MedftError):
    """The results directory cannot be written (read-only, a full disk). ``record`` holds a result that was
    computed but could not be stored, so that the caller can still show it."""

    def __init__(self, message: str, record: "dict | None" = None) -> None:
        super().__init__(message)
        self.record = record


class NewerRecordError(RecordError):
    """A record written by a newer medft-bench (a schema version this code does not know)."""


class RecordBlockedError(ResultsWriteError):
    """A file this code cannot read as a record (a newer schema, unknown fields, damaged, not a regular file)
    holds a cell's place: it is never replaced or deleted, so the cell is neither reused nor computed."""


def unknown(kind: str, name: str, valid: "list[str] | tuple[str, ...]") -> UnknownNameError:
    """An error for an unknown ``kind`` name that lists the valid ones."""
    return UnknownNameError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")
