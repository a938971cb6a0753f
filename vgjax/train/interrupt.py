"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's time
limit): the loop saves after every mining round, so the state worth keeping is already in
`RUN/checkpoints/last`; what an interruption needs is one line saying what is saved and
that the same command resumes, and the conventional exit code (128 + the signal)."""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from vgjax.train import checkpoint


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same code handles both."""


class TrainingInterrupted(Exception):
    """A run stopped by a signal; `exit_code` is 128 + its number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


_stopping = threading.Event()  # set once a signal asked the process to stop


def _thread_error_hook(previous):
    """`threading.excepthook` that, once the process is stopping on a signal, logs a
    background thread's error at debug level instead of printing its traceback: the main
    thread unwinds through the checkpointer's and the decoders' context managers, and their
    worker threads (orbax's save futures, say) can fail on the executors closed under them.
    Their work is dropped by design (the report names the last complete checkpoint)."""
    def hook(args):
        if _stopping.is_set():
            logging.getLogger("vgjax.train").debug(
                "background thread %s stopped by the interruption: %r",
                getattr(args.thread, "name", "?"), args.exc_value)
            return
        previous(args)
    return hook


def _quiet_background_errors(record: logging.LogRecord) -> bool:
    """Once a signal stops the process, an error a background thread logs with its traceback
    (orbax's save futures on their closed executors) goes to debug level only."""
    if (_stopping.is_set() and record.exc_info
            and record.thread != threading.main_thread().ident):
        logging.getLogger("vgjax.train").debug("background thread stopped by the interruption: "
                                               "%s", record.getMessage())
        return False
    return True


def _in_gc_callback(frame) -> bool:
    """Whether `frame` runs inside a garbage-collector callback (JAX registers one)."""
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks} - {None}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _resend(signum: int) -> None:
    os.kill(os.getpid(), signum)


def raise_on_sigterm() -> None:
    """Turns SIGTERM into `Terminated` and SIGINT into `KeyboardInterrupt` in the main thread,
    and from the signal on keeps the background threads' teardown errors out of the output
    (one line, the report, is what an interrupted run prints). A signal that lands inside a
    garbage-collector callback is sent again just after it: an exception raised there would
    be printed as "Exception ignored" and lost, and the run would go on."""
    def handler(signum, frame):
        if not _stopping.is_set():
            for h in logging.getLogger().handlers:  # e.g. orbax logs its futures' errors
                h.addFilter(_quiet_background_errors)
        _stopping.set()
        if _in_gc_callback(frame):
            threading.Timer(0.05, lambda: _resend(signum)).start()
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    threading.excepthook = _thread_error_hook(threading.excepthook)


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
