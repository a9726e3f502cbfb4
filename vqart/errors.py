"""The one exception type for mistakes a user can fix."""


class VqartError(Exception):
    """A problem with the user's input or environment; the message says what to do about it."""
