"""The one error type a user sees: a single line naming the input and the problem."""


class UserError(Exception):
    """Bad input or a refused action. The CLI prints it as one line and exits with status 2."""
