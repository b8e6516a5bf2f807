"""What ``marblekit``'s exit status means, one meaning per code, and which failures map to which.

Expected failures (bad flags, a missing file, a server that stays down, a gate that fails) end with one
``marblekit COMMAND: error: ...`` line and their code; only a bug shows a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    TRACKS_FAILED = 1  # the job ran, but some tracks (of the whole store) could not be extracted
    USAGE = 2  # bad flags or arguments: argparse's code, and values or paths the command refuses
    SERVER_UNAVAILABLE = 3  # the Triton server could not be reached within the retry budget
    GATE_FAILED = 4  # an exported model failed its parity gate or the export's probe-score gate
    ERROR = 5  # another expected failure: a server that does not start, a full disk, a model error
    INTERRUPTED = 130  # Ctrl-C


EPILOG = ("exit status: 0 success, 1 some tracks failed, 2 bad flags or arguments, 3 Triton server unavailable, "
          "4 parity or score gate failed, 5 another error (the message says which), 130 interrupted")


class AppError(Exception):
    """A failure of the app floor's own jobs (the demo), with its exit code."""

    code = ExitCode.ERROR


class GateFailed(AppError):
    code = ExitCode.GATE_FAILED


class TracksFailed(AppError):
    code = ExitCode.TRACKS_FAILED


def exit_code_of(error: BaseException) -> ExitCode | None:
    """The exit code of an expected failure; None for anything else (a bug: let it show its traceback)."""
    from marblekit.serving.client import RETRYABLE, ModelNotServed, ServingError
    from marblekit.serving.embedded import TritonStartupError

    if isinstance(error, AppError):
        return error.code
    if isinstance(error, ModelNotServed):  # a --model the server does not have
        return ExitCode.USAGE
    if isinstance(error, (*RETRYABLE, ConnectionError)):
        return ExitCode.SERVER_UNAVAILABLE
    if isinstance(error, (ServingError, TritonStartupError)):
        return ExitCode.ERROR
    if isinstance(error, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return ExitCode.USAGE
    if isinstance(error, (OSError, RuntimeError)):
        return ExitCode.ERROR
    return None
