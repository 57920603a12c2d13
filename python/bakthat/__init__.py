"""bakthat 0.6's Python API on the Rust core.

``backup``, ``restore``, ``show``, ``ls``, ``delete``, ``delete_older_than`` and ``rotate_backups`` keep 0.6's
names, arguments and return shapes (``list_files`` is new: the files of one backup), and act on the same config file (``~/.bakthat.yml``), inventory, stores and
archives as the ``bakthat`` command line. ``bakthat.events`` fires ``before_*``/``on_*`` for each action, whether
started from Python or from the package's ``bakthat`` command; ``bakthat.helper`` has ``BakHelper`` and
``KeyValue``; ``bakthat.plugin`` the ``Plugin`` base class of 0.6's ``plugins:``.

Every failure raises a ``BakthatError`` (subclasses: ``ConfigError``, ``PasswordError``, ``BackupNotFound``,
``RetrievalPending``, ``StoreError``, ``Cancelled``) whose message is the command line's one-line error. Ctrl-C
during a call raises ``KeyboardInterrupt`` and leaves nothing under a final name; it stops only the main thread's
call. To stop a call from another thread, give it ``cancel=bakthat.Cancel()`` and call that token's ``cancel()``:
the call raises ``Cancelled``, and calls in other threads go on.

What differs from 0.6 is listed in the README's "Python" section: the default destination is the profile's
(``local`` when unset), ``conf=`` is honoured, destructive calls match names exactly, archives use the new
authenticated encryption, and restore never overwrites without ``force=True``.
"""

import getpass
import json
import logging
import os
import sys

from bakthat import _native
from bakthat._native import (
    BackupNotFound,
    BakthatError,
    Cancel,
    Cancelled,
    ConfigError,
    PasswordError,
    RetrievalPending,
    StoreError,
)
from bakthat import events
from bakthat import plugin as _plugin
from bakthat.models import Backups
# Imported before the function `sync` below is defined, which then takes the name `bakthat.sync` (as in 0.6, whose
# `bakthat.sync()` was the command): `from bakthat.sync import BakSyncer` still reaches the module.
from bakthat.sync import BakSyncer

__version__ = _native.__version__

__all__ = [
    "backup",
    "restore",
    "show",
    "ls",
    "list_files",
    "sync",
    "reset_sync",
    "delete",
    "delete_older_than",
    "rotate_backups",
    "events",
    "BakthatError",
    "ConfigError",
    "PasswordError",
    "BackupNotFound",
    "RetrievalPending",
    "StoreError",
    "Cancel",
    "Cancelled",
]

log = logging.getLogger("bakthat")

# Every client made in this process (by these functions or by the in-process command line) fires its events into
# bakthat.events and runs the profile's plugins.
_native._install_host(events._dispatch, _plugin._setup)


def _target(profile="default", config=None, conf=None, cancel=None):
    """The (config_path, config_json, profile, conf_json, cancel) tuple the native module takes."""
    path = json_config = None
    if isinstance(config, dict):
        json_config = json.dumps(config)
    elif config is not None:
        path = os.fspath(config)
    if cancel is not None and not isinstance(cancel, Cancel):
        raise TypeError(f"cancel must be a bakthat.Cancel, not {type(cancel).__name__}")
    return (path, json_config, profile or "default", json.dumps(conf) if conf else None, cancel)


def _tags(tags):
    if not tags:
        return []
    if isinstance(tags, str):
        return tags.split()
    return [str(t) for t in tags]


def backup(filename=None, destination=None, profile="default", config=None, prompt="yes", tags=[], key=None,
           exclude_file=None, s3_reduced_redundancy=False, password=None, conf=None, custom_filename=None, cancel=None,
           **kwargs):
    """Back up a file or directory (default: the current directory) and record it in the inventory.

    Returns the inventory row as a dict (``stored_filename``, ``size``, ``metadata``, ``backend``, ``filename``,
    ``backup_date``, ``tags``, ...). ``tags`` is a list or a space-separated string. The password is ``password``,
    else ``$BAKTHAT_PASSWORD``, else (with ``prompt="yes"`` on a terminal) asked twice; empty means no encryption.
    ``custom_filename`` names the backup instead of the basename. ``conf`` is a profile dict laid over the
    profile's settings (``{"access_key": ..., "s3_bucket": ..., "region_name": ...}``). ``cancel`` (every action
    takes it) is a ``bakthat.Cancel`` whose ``cancel()``, from any thread, stops this call (``Cancelled``). Fires
    ``before_backup`` and ``on_backup``.
    """
    if filename is None:
        filename = os.getcwd()
    if password is None:
        password = os.environ.get("BAKTHAT_PASSWORD")
    if password is None and prompt == "yes" and sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass("Password (blank to disable encryption): ")
        if password and getpass.getpass("Password confirmation: ") != password:
            raise PasswordError("the password and its confirmation differ; nothing was backed up")
    row = _native.backup(
        _target(profile, config, conf, cancel),
        os.fspath(filename),
        destination=destination or None,
        tags=_tags(tags),
        name=custom_filename or kwargs.get("name"),
        password=password,
        exclude_file=os.fspath(exclude_file) if exclude_file else None,
        reduced_redundancy=bool(s3_reduced_redundancy),
        key=key,
    )
    for warning in row.pop("warnings", []):
        log.warning(warning)
    return row


def restore(filename, destination=None, profile="default", config=None, password=None, conf=None, to=None,
            force=False, cancel=None, **kwargs):
    """Restore the newest backup of ``filename`` (a name or an exact stored name) into the current directory, or
    into ``to``. Returns True. The password is ``password``, else ``$BAKTHAT_PASSWORD``, else asked on a terminal
    when the backup is encrypted. Existing files are not overwritten unless ``force=True``. Fires
    ``before_restore`` and ``on_restore``. Raises ``BackupNotFound``, ``PasswordError``, ``RetrievalPending``
    (cold storage: run again later), ...
    """
    if password is None:
        password = os.environ.get("BAKTHAT_PASSWORD")
    target = _target(profile, config, conf, cancel)
    where = os.fspath(to) if to is not None else os.getcwd()
    try:
        _native.restore(target, filename, destination=destination or None, password=password, to=where, force=force)
    except PasswordError:
        if password or sys.stdin is None or not sys.stdin.isatty():
            raise
        password = getpass.getpass("Password: ")
        _native.restore(target, filename, destination=destination or None, password=password, to=where, force=force)
    return True


def show(query="", destination="", tags="", profile="default", config=None, conf=None, output=None, **kwargs):
    """Print the inventory's backups matching ``query`` (a substring of the name or stored name), ``destination``
    (one store kind or a list; all when empty) and ``tags`` (all of them, whole words), newest first, one line
    each as the command line prints them into a pipe; returns them as a list of ``Backups``.
    """
    rows, text = Backups._search(query, destination,
                                 dict(kwargs, tags=tags, profile=profile, config=config, conf=conf), lines=True)
    (output if output is not None else sys.stdout).write(text)
    return rows


def ls(query="", destination="", tags="", profile="default", config=None, conf=None):
    """The inventory's backups as ``show`` finds them, without printing: a list of ``Backups``. (The files inside
    one backup, what ``bakthat ls NAME`` prints, are ``list_files(NAME)``.)"""
    return Backups.search(query, destination, tags=tags, profile=profile, config=config, conf=conf)


def list_files(filename, path=None, destination=None, profile="default", config=None, password=None, conf=None,
               cancel=None):
    """The files of the newest backup of ``filename`` (a name, or an exact stored name), as ``bakthat ls NAME``
    lists them: a list of dicts ``{path, kind, mode, uid, gid, size, mtime, mtime_utc[, link]}`` (``kind`` is
    ``file``, ``dir``, ``symlink``, ``hardlink`` or ``other``; ``path`` starts with the backup's basename), in
    archive order. ``path`` keeps only that file or directory subtree. Read from the inventory's copy of the
    backup's index: no download. An encrypted backup needs its password (``password``, else
    ``$BAKTHAT_PASSWORD``). Raises ``BackupNotFound``, ``PasswordError``, or ``BakthatError`` for a 0.6 archive
    that was never read whole (``bakthat verify`` indexes it). Not in 0.6.
    """
    if password is None:
        password = os.environ.get("BAKTHAT_PASSWORD")
    listing = _native.ls(_target(profile, config, conf, cancel), filename, path=path,
                         destination=destination or None, password=password)
    return listing["entries"]


def delete(filename, destination=None, profile="default", config=None, password=None, conf=None, cancel=None,
           **kwargs):
    """Delete the newest backup of ``filename`` from ``destination`` (default: the profile's). True when one was
    deleted, False when none matched. Fires ``before_delete`` and ``on_delete``.
    """
    if password is None:
        password = os.environ.get("BAKTHAT_PASSWORD")
    try:
        _native.delete(_target(profile, config, conf, cancel), filename, destination=destination or None,
                       password=password)
    except BackupNotFound:
        return False
    return True


def delete_older_than(filename, interval, destination=None, profile="default", config=None, password=None,
                      conf=None, cancel=None, **kwargs):
    """Delete the backups named exactly ``filename`` older than ``interval`` (``3M2D``; units s m h D W M Y).
    Returns the deleted backups (a list of ``Backups``). An empty interval is refused. Fires
    ``before_delete_older_than`` and ``on_delete_older_than``.
    """
    if password is None:
        password = os.environ.get("BAKTHAT_PASSWORD")
    rows = _native.delete_older_than(_target(profile, config, conf, cancel), filename, interval,
                                     destination=destination or None, password=password)
    return [Backups._from_row(r) for r in rows]


def rotate_backups(filename, destination=None, profile="default", config=None, password=None, conf=None,
                   days=None, weeks=None, months=None, first_week_day=None, cancel=None, **kwargs):
    """Apply grandfather-father-son rotation to the backups named exactly ``filename``: the profile's
    ``rotation:`` policy, or ``days``/``weeks``/``months`` (and ``years``, ``hours``... as keywords) for this run.
    The newest backup is always kept. Returns the deleted backups. Fires ``before_rotate_backups`` and
    ``on_rotate_backups``.
    """
    if password is None:
        password = os.environ.get("BAKTHAT_PASSWORD")
    counts = dict(days=days, weeks=weeks, months=months,
                  **{k: kwargs[k] for k in ("years", "hours", "minutes", "seconds") if k in kwargs})
    policy = {k: v for k, v in counts.items() if v is not None}
    if policy:
        if first_week_day is not None:
            policy["first_week_day"] = first_week_day
        conf = dict(conf or {}, rotation=policy)
    rows = _native.rotate_backups(_target(profile, config, conf, cancel), filename, destination=destination or None,
                                  password=password)
    return [Backups._from_row(r) for r in rows]


def sync(profile="default", config=None, conf=None, destination=None, password=None):
    """Sync the inventory, as 0.6's ``bakthat.sync()``: with the profile's sync server, else with the store's
    journal. Returns the counts (``inserted``, ``updated``, ...). ``BakSyncer`` is the object form."""
    return BakSyncer(profile=profile, config=config, conf=conf).sync(destination=destination, password=password)


def reset_sync(profile="default", config=None, conf=None):
    """Forget the sync server state (0.6's ``bakthat.reset_sync()``): the next sync sends every row."""
    BakSyncer(profile=profile, config=config, conf=conf).reset_sync()


# `bakthat.sync` is the function above; keep `bakthat.sync.BakSyncer` working for code that used the module path.
sync.BakSyncer = BakSyncer
