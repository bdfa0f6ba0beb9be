"""The exceptions of tfislr's error contract.

A `TfislrError` is a problem the user fixes by changing what they gave a command: a
file, a folder, a config value or an option. Its message is one line that names the
file or setting and what is wrong with it. Code raises it where it checks the user's
input; nothing guesses later whether some other exception was the user's fault.

A `DataWarning` flags input tfislr can use but that is probably not what the user meant.

How a command turns these into one stderr line and an exit code (2 for a `TfislrError`, 1
for anything else) is `tfislr.cli.command`'s job; the library only raises.

The subclasses also derive from the built-in exception a library caller would catch
(`ValueError`, and `FileNotFoundError` for a missing file), so code and tests written
against those keep working.
"""


class TfislrError(Exception):
    """A user-facing error: the message alone tells the user what to change."""


class ConfigError(TfislrError, ValueError):
    """A bad config file, `--set` override, ensemble YAML or command option value."""


class DataError(TfislrError, ValueError):
    """A data folder, `train.csv`, sign map, landmark or video file that cannot be used."""


class MissingFileError(DataError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class DataWarning(UserWarning):
    """Input that tfislr can use but that is probably not what the user meant; the message
    names the file and what looks wrong (`warnings.filterwarnings` can silence it)."""
