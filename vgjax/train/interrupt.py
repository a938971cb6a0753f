"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's time
limit): the loop saves after every mining round, so the state worth keeping is already in
`RUN/checkpoints/last`; what an interruption needs is one line saying what is saved and
that the same command resumes, and the conventional exit code (128 + the signal)."""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from vgjax.train import checkpoint


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same code handles both."""


class TrainingInterrupted(Exception):
    """A run stopped by a signal; `exit_code` is 128 + its number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def raise_on_sigterm() -> None:
    """Turns SIGTERM into `Terminated` in the main thread."""
    def handler(signum, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, handler)


def interrupted(run: Path, error: KeyboardInterrupt) -> TrainingInterrupted:
    """The one-line report of an interruption: what `last` holds and how to resume."""
    sig = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
    found = checkpoint.find(run, "last")
    if found is None:
        saved = "no mining round had finished, nothing is saved"
    else:
        p = checkpoint.read_progress(found)
        saved = (f"{found} holds the state after {p['round']} mining round(s) of epoch "
                 f"{p['epoch']} (step {p['step']})")
    return TrainingInterrupted(f"interrupted by {sig.name}: {saved}; run the same command "
                               "to resume", 128 + int(sig))


def exit_now(code: int) -> None:
    """Ends an interrupted process with `code` once its output is flushed, without the
    interpreter's teardown: the state is saved, and teardown with decoding threads and
    device work still in flight (the signal can land anywhere) can crash the process
    that is stopping anyway, turning the conventional code into a segfault's."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
