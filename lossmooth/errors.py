"""The one error type for bad input: its message is a single line naming the field or file and the fix."""


class ConfigError(ValueError):
    """Bad user input (a config field, a missing file). The CLI prints it as one line and exits 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
