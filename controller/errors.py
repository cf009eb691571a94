"""The errors the controller reports to users. The REST layer maps each class to one HTTP status."""


class MirrorlabError(Exception):
    """Base class: a request the controller refuses, with a message that names the problem."""

    status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(MirrorlabError):
    """The request is malformed or names a value that cannot work (400)."""

    status = 400


class Unauthorized(MirrorlabError):
    """The API has a bearer token and the request did not present it (401)."""

    status = 401


class Forbidden(MirrorlabError):
    """The request comes from a host name, origin or client the API does not serve, or lacks
    the capture's secret (403)."""

    status = 403


class NotFound(MirrorlabError):
    """The request names something that does not exist (404)."""

    status = 404


class Conflict(MirrorlabError):
    """The request clashes with the lab's current state or a limit (409)."""

    status = 409


class PayloadTooLarge(MirrorlabError):
    """The request body is larger than the API accepts (413)."""

    status = 413


class LabUnavailable(MirrorlabError):
    """The lab is not whole (its lab process or a VM died), or the lab process that creates
    analyzer VMs did not answer (503)."""

    status = 503


class VRouterUnavailable(MirrorlabError):
    """A vRouter is not connected, did not confirm flow changes in time, or refused them (503)."""

    status = 503
