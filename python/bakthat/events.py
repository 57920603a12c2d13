"""Events, as in bakthat 0.6: ``events.before_backup += fn`` registers ``fn(session_id)``, ``events.on_backup += fn``
registers ``fn(session_id, backup)``.

The ten events are ``before_`` and ``on_`` of ``backup``, ``restore``, ``delete``, ``delete_older_than`` and
``rotate_backups``. Both events of one action get the same ``session_id`` (a UUID string). ``on_backup``,
``on_restore`` and ``on_delete`` get the ``Backups`` object; ``on_delete_older_than`` and ``on_rotate_backups`` a
list of the deleted ones. ``on_*`` fires only when the action succeeded (0.6 raised before firing it).

They fire for actions started from Python and, with the package's ``bakthat`` command, from the command line. A
callback runs on the thread doing the action (not always the caller's: calls run on a worker thread so that
Ctrl-C works). A ``before_*`` callback that raises stops the action and its exception is raised by the call; an
``on_*`` callback that raises leaves the action done and its exception is raised by the call.

This module does not run actions; the Rust core fires the events through ``_dispatch``.
"""

ACTIONS = ("backup", "restore", "delete", "delete_older_than", "rotate_backups")
NAMES = tuple(f"{phase}_{action}" for action in ACTIONS for phase in ("before", "on"))


class EventHook:
    """One event: ``hook += fn`` adds a callback, ``hook -= fn`` removes it, ``hook(*args)`` calls each in order."""

    def __init__(self, name):
        self.__name__ = name
        self._handlers = []

    def __iadd__(self, handler):
        if not callable(handler):
            raise TypeError(f"{self.__name__}: a callback must be callable, got {handler!r}")
        self._handlers.append(handler)
        return self

    def __isub__(self, handler):
        self._handlers.remove(handler)
        return self

    def __call__(self, *args, **kwargs):
        for handler in list(self._handlers):
            handler(*args, **kwargs)

    def __len__(self):
        return len(self._handlers)

    def __iter__(self):
        return iter(list(self._handlers))

    def __repr__(self):
        return f"<event {self.__name__}: {len(self._handlers)} callback(s)>"


before_backup = EventHook("before_backup")
on_backup = EventHook("on_backup")
before_restore = EventHook("before_restore")
on_restore = EventHook("on_restore")
before_delete = EventHook("before_delete")
on_delete = EventHook("on_delete")
before_delete_older_than = EventHook("before_delete_older_than")
on_delete_older_than = EventHook("on_delete_older_than")
before_rotate_backups = EventHook("before_rotate_backups")
on_rotate_backups = EventHook("on_rotate_backups")


def __getattr__(name):
    raise AttributeError(f"Event {name} does not exist!")


def hook(name):
    """The event named ``name``; an unknown name raises AttributeError("Event X does not exist!")."""
    if name not in NAMES:
        raise AttributeError(f"Event {name} does not exist!")
    return globals()[name]


def clear():
    """Removes every callback (tests use it)."""
    for name in NAMES:
        globals()[name]._handlers.clear()


_LISTS = ("on_delete_older_than", "on_rotate_backups")


def _dispatch(name, session_id, records, error):
    """Called by the core for each event of each client of this process."""
    event = globals().get(name)
    if not isinstance(event, EventHook) or not event._handlers:
        return
    if records is None:
        event(session_id)
        return
    if error is not None:
        return
    from bakthat.models import Backups

    if name in _LISTS:
        event(session_id, [Backups._from_row(r) for r in records])
    else:
        event(session_id, Backups._from_row(records[0]) if records else None)
