"""Refusals of the browser UI shown as a warning toast, with nothing else on the page touched.

A handler that raises `gr.Error` also puts Gradio's red "Error" status on every output of its event,
and those badges cover the pickers and buttons until each is closed by hand. So handlers raise
`Refused` (or let an app error through), and `toasts_refusals` turns it into a toast and "no update".
"""
from __future__ import annotations

import functools
import html
import inspect
from typing import Any, Callable

import gradio as gr

from app.errors import AppError, NotFound
from ingest.errors import IngestError

STALE = "; it may have been deleted in another tab or window: reload the page to see what is there now"


class Refused(Exception):
    """What the user asked cannot be done now; the message says why, in plain words."""


def is_refusal(err: BaseException) -> bool:
    """Errors the user can act on: a refusal, an app error, a document that cannot be read."""
    return isinstance(err, (Refused, AppError, IngestError))


def warn(err: BaseException | str) -> None:
    """A warning toast with `err`'s message. Gradio renders a toast's message as HTML and the message
    may quote what the user typed (a workspace name): escaped."""
    text = str(err) or err.__class__.__name__
    if isinstance(err, NotFound):          # e.g. "document 9 does not exist": this page is out of date
        text += STALE
    gr.Warning(html.escape(text, quote=False))


def toasts_refusals(fn: Callable) -> Callable:
    """Wrap a handler (function or generator): a refusal becomes a toast and `gr.skip()` (every output
    left as it is), as does a generator's end without an update. Other exceptions (bugs) go to
    Gradio as before."""
    def skip_after_toast(err: Exception) -> Any:
        if not is_refusal(err):
            raise err
        warn(err)
        return gr.skip()

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any):
            updates, shown = fn(*args, **kwargs), False
            try:
                for update in updates:
                    shown = True
                    yield update
            except Exception as err:
                yield skip_after_toast(err)
                return
            finally:
                updates.close()        # (closing this closes the handler at its update, as `yield from` did)
            if not shown:              # Gradio sets every output, states too, to None after a generator
                yield gr.skip()        # that yields nothing: the open workspace and chat were forgotten
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            return skip_after_toast(err)
    return call
