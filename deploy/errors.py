"""The launcher's error for the person at the terminal, in a module of its own so that every deploy module
can raise it without importing another's."""

from __future__ import annotations


class StackError(RuntimeError):
    """A failure with a message meant for the person at the terminal."""
