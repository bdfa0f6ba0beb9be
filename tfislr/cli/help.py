"""`--help` for every tfislr command: an option's default is shown where it says something.

argparse's `ArgumentDefaultsHelpFormatter` appends `(default: X)` to every option, which
reads `(default: None)`, `(default: False)` or `(default: [])` for an option left out,
where only the option's own help can say what that means ("a new run folder", "every
sequence"). `HelpFormatter` appends the default only when it is a value, and never when
the help already states one.
"""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`formatter_class` of every command's parser (and sub-parser)."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.required or "(default" in help_text:
            return help_text
        return super()._get_help_string(action)
