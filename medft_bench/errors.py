"""Errors a user can act on. Each message names the problem and what to do about it."""

from __future__ import annotations

import errno
import os


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


class WriteError(MedftError):
    """A place the run writes to (the cache, the results, ``--out``, the data root) cannot be written: read-only,
    full, not permitted. The message names the path, the cause and what to do (:func:`cannot_write`)."""


class ResultsWriteError(WriteError):
    """The results directory cannot be written (read-only, a full disk). ``record`` holds a result that was
    computed but could not be stored, so that the caller can still show it."""

    def __init__(self, message: str, record: dict | None = None) -> None:
        super().__init__(message)
        self.record = record


# What a user does first: free space, or fix the permissions.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM)
# An OSError with one of these says the place cannot be written (not that a file read or a network failed).
WRITE_ERRNOS = (errno.EROFS, *_FULL, *_DENIED)


def os_error_of(exc: BaseException) -> OSError | None:
    """The :class:`OSError` ``exc`` is, or was raised while handling (``torch.save`` into a file object reports a
    failed write as a RuntimeError whose context is the OSError); None when there is none."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def write_cause(exc: BaseException) -> str:
    """Why a write failed, in a few words: "Read-only file system", "No space left on device", ..."""
    os_exc = os_error_of(exc)
    if os_exc is not None and os_exc.errno:  # the system's own words, the ones a user searches for
        return os_exc.strerror or os.strerror(os_exc.errno)
    return " ".join(str(exc).split())[:200]


def cannot_write(what: str, path: str | os.PathLike[str], exc: BaseException, elsewhere: str,
                 cls: type[WriteError] = WriteError) -> WriteError:
    """One line: ``cannot write <what> <path> (<cause>): <what to do>``. ``elsewhere`` says where else to write
    (e.g. "set MEDFT_CACHE_DIR to another folder"); a full disk or a permission problem is told first to free
    space or fix the permissions."""
    os_exc = os_error_of(exc)
    code = os_exc.errno if os_exc is not None else None
    fix = ("free space there, or " if code in _FULL else "fix its permissions, or " if code in _DENIED else "")
    return cls(f"cannot write {what} {path} ({write_cause(exc)}): {fix}{elsewhere}")


class NewerRecordError(RecordError):
    """A record written by a newer medft-bench (a schema version this code does not know)."""


class RecordBlockedError(ResultsWriteError):
    """A file this code cannot read as a record (a newer schema, unknown fields, damaged, not a regular file)
    holds a cell's place: it is never replaced or deleted, so the cell is neither reused nor computed."""


def unknown(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> UnknownNameError:
    """An error for an unknown ``kind`` name that lists the valid ones."""
    return UnknownNameError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")
