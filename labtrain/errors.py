"""Domain errors. Each names the task, field or label at fault; the API maps them to 4xx."""


class LabtrainError(Exception):
    """Base of every error a user can cause and fix."""

    status_code = 400


class ConfigError(LabtrainError):
    """The labeling config is malformed or breaks a rule of the product."""

    status_code = 422


class ImportError_(LabtrainError):
    """An export file was rejected whole; the message names the task index and the reason."""

    status_code = 422


class ValidationError(LabtrainError):
    """A value in a request is not one the domain allows (a role, a name)."""

    status_code = 422


class SelectionError(LabtrainError):
    """The selection parameters (split, tags) cannot be applied."""

    status_code = 422


class NotFound(LabtrainError):
    status_code = 404


class Conflict(LabtrainError):
    status_code = 409


class Forbidden(LabtrainError):
    status_code = 403


class Unauthorized(LabtrainError):
    status_code = 401


class StorageFull(LabtrainError):
    """The disk of labtrain's home is full: the request wrote nothing and can be repeated."""

    status_code = 507


class ServiceUnavailable(LabtrainError):
    """A part of the service (the catalog, the job manager) is restarting: nothing was lost, try again."""

    status_code = 503


def disk_full(exc: BaseException) -> bool:
    """Whether an error (OSError, DuckDB's IO or commit error, Arrow's) is a full disk."""
    import errno

    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)
