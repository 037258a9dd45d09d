"""One exception type for problems the user can fix.

Its message is a whole sentence that says what was wrong and what to do. The CLI prints
it without a traceback and exits 2; the server turns it into a 4xx answer.
"""


class UserError(Exception):
    """A problem with the user's input, explained in words a GIS user understands."""

    http_status = 400


class NotFoundError(UserError):
    http_status = 404


class CancelledError(Exception):
    """A job was cancelled cooperatively (between batches)."""


class EngineUnavailableError(UserError):
    """The model engine kept failing on a request after its retries (the server, not the input).

    A pipeline records the tile it was answering as failed and goes on; a run in which
    nothing gets through stops with this sentence.
    """

    http_status = 503
