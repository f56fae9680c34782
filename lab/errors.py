"""The one exception type for user mistakes: printed as a single line by ``lab``."""


class LabError(Exception):
    """A problem the user can fix (a missing folder, a bad value): shown without a traceback."""
