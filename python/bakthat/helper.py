"""0.6's helpers for backup scripts: ``BakHelper`` (a temporary working directory to dump into, then backup, rotate,
restore, delete_older_than under one name) and ``KeyValue`` (small JSON values in the profile's S3 bucket).

    from bakthat.helper import BakHelper

    with BakHelper("mysql", tags=["db"], password="...") as bh:
        subprocess.run(["mysqldump", "--all-databases", "--result-file=all.sql"], check=True)
        bh.backup()
        bh.rotate()

Not here: the actions themselves (``bakthat``), which these call.
"""

import json
import logging
import os
import shutil
import tempfile

import bakthat
from bakthat import _native

log = logging.getLogger("bakthat.helper")


class KeyValue:
    """Small JSON values under keys of the profile's S3 bucket (``s3_bucket``), as 0.6 and ``bakthat kv`` store
    them: gzipped unless ``compress=False``, encrypted with ``password``. Reads 0.6's objects (gzip, beefish) and
    those ``bakthat kv`` writes. S3 only, as in 0.6: a profile whose store is local (without ``s3_bucket``) or
    Swift raises ``ConfigError`` on each call."""

    def __init__(self, conf=None, profile="default", config=None):
        self.conf = conf or {}
        self.profile = profile
        self.config = config

    def _target(self):
        return bakthat._target(self.profile, self.config, self.conf)

    def set_key(self, keyname, value, compress=True, password=None):
        """Stores ``value`` (anything ``json.dumps`` takes) under ``keyname``."""
        _native.kv_set(self._target(), keyname, json.dumps(value), compress=compress, password=password)

    def get_key(self, keyname, default=None, password=None):
        """The value under ``keyname``, or ``default`` when there is none."""
        text = _native.kv_get(self._target(), keyname, password=password)
        return default if text is None else json.loads(text)

    def delete_key(self, keyname):
        """Deletes ``keyname``; True if it existed."""
        return _native.kv_delete(self._target(), keyname)

    def get_key_url(self, keyname, expires_in, method="GET"):
        """A presigned (SigV4) URL of ``keyname``'s object for ``method``, valid ``expires_in`` seconds (at most 7
        days), as 0.6's boto ``generate_url``: ``GET`` downloads the stored bytes (gzipped JSON unless stored with
        ``compress=False``, encrypted if stored with a password), ``PUT`` uploads a new body (``get_key`` reads
        plain or gzipped JSON), ``DELETE`` and ``HEAD`` act on the object. The key must exist, except for ``PUT``.
        A PUT or DELETE through the URL does not update the inventory's row (as in 0.6). Other methods raise
        ``BakthatError``; a profile without an S3 bucket (local or Swift store) raises ``ConfigError``."""
        return _native.kv_url(self._target(), keyname, int(expires_in), method)


class BakHelper:
    """A backup script's helper, as in 0.6.

    As a context manager it makes a temporary directory ``<backup_name>_XXXXXX`` and the current directory; on
    exit (also on an exception) the old current directory is restored and the directory removed. ``backup()``
    backs it up (or ``backup(path)`` a path) under the name ``backup_name``; ``rotate()``,
    ``delete_older_than(interval)`` and ``restore()`` act on that name. As a plain class (0.6's
    ``BakHelper(conf=...)``) ``backup_name`` may be left out: ``backup(path)`` names the backup after the path, and
    the other actions act on that name. Keywords: ``destination``, ``password``
    (empty: no encryption, the default), ``profile``, ``config``, ``conf`` (a profile dict), ``tags``, ``key``.
    """

    def __init__(self, backup_name=None, **kwargs):
        self.backup_name = backup_name
        self.dir_prefix = f"{backup_name or 'bakthat'}_"
        self.destination = kwargs.get("destination")
        self.password = kwargs.get("password", "")
        self.profile = kwargs.get("profile", "default")
        self.config = kwargs.get("config")
        self.conf = kwargs.get("conf", {})
        self.tags = kwargs.get("tags", [])
        self.key = kwargs.get("key")
        self.syncer = None
        self.tmpd = None
        self.old_cwd = None
        self.last_backup = None

    def __enter__(self):
        self.old_cwd = os.getcwd()
        self.tmpd = tempfile.mkdtemp(prefix=self.dir_prefix)
        os.chdir(self.tmpd)
        log.info("New current working directory: %s.", self.tmpd)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()
        if self.syncer and exc_type is None:
            self.sync()

    def close(self):
        """Goes back to the old current directory and removes the temporary one."""
        if self.old_cwd is not None:
            os.chdir(self.old_cwd)
            log.info("Back to %s", self.old_cwd)
            self.old_cwd = None
        if self.tmpd is not None:
            shutil.rmtree(self.tmpd, ignore_errors=True)
            self.tmpd = None

    def _common(self, kwargs):
        return dict(destination=kwargs.get("destination", self.destination),
                    profile=kwargs.get("profile", self.profile),
                    config=kwargs.get("config", self.config),
                    conf=kwargs.get("conf", self.conf))

    def backup(self, filename=None, **kwargs):
        """Backs up ``filename`` (default: the temporary directory) as ``backup_name``; returns the row dict."""
        if filename is None:
            if self.tmpd is None:
                raise bakthat.BakthatError(
                    "BakHelper.backup() without a path backs up its temporary directory: use it as "
                    "`with BakHelper(...) as bh:`, or give the path to back up")
            filename = self.tmpd
        row = bakthat.backup(filename,
                             password=kwargs.get("password", self.password),
                             tags=kwargs.get("tags", self.tags),
                             key=kwargs.get("key", self.key),
                             custom_filename=self.backup_name,
                             prompt="no",
                             cancel=kwargs.get("cancel"),
                             **self._common(kwargs))
        self.last_backup = row
        return row

    def _name(self, filename):
        """The name the other actions act on: ``filename``, else ``backup_name``, else the last backup's name."""
        name = filename or self.backup_name or (self.last_backup or {}).get("filename")
        if not name:
            raise bakthat.BakthatError("no backup name: give BakHelper a backup_name, or the name to act on")
        return name

    def restore(self, filename=None, **kwargs):
        """Restores the newest backup of ``filename`` (default: ``backup_name``) into the current directory (or
        ``to=``); returns True."""
        return bakthat.restore(self._name(filename),
                               password=kwargs.get("password", self.password),
                               to=kwargs.get("to"), force=kwargs.get("force", False), cancel=kwargs.get("cancel"),
                               **self._common(kwargs))

    def delete_older_than(self, filename=None, interval=None, **kwargs):
        """Deletes the backups of ``filename`` (default: ``backup_name``) older than ``interval``."""
        if interval is None:
            raise bakthat.BakthatError("delete_older_than needs an interval such as 3M or 2W")
        return bakthat.delete_older_than(self._name(filename), interval,
                                         password=kwargs.get("password", self.password), **self._common(kwargs))

    def rotate(self, filename=None, **kwargs):
        """Applies the rotation policy (the profile's, or ``days``/``weeks``/``months`` keywords) to the backups of
        ``filename`` (default: ``backup_name``); returns the deleted ones."""
        policy = {k: kwargs[k] for k in ("days", "weeks", "months", "first_week_day", "years", "hours", "minutes",
                                         "seconds") if k in kwargs}
        return bakthat.rotate_backups(self._name(filename),
                                      password=kwargs.get("password", self.password),
                                      **self._common(kwargs), **policy)

    def enable_sync(self, api_url=None, auth=None):
        """Syncs the inventory after the block: with the sync server at ``api_url`` (``auth`` = (user,
        password)), else as the profile says (its ``sync:`` server, or the store's journal)."""
        from bakthat.sync import BakSyncer

        self.syncer = BakSyncer(api_url, auth, profile=self.profile, config=self.config, conf=self.conf)

    def sync(self):
        """Syncs now if ``enable_sync`` was called; problems are logged, not raised (as 0.6)."""
        if self.syncer:
            try:
                return self.syncer.sync()
            except bakthat.BakthatError as exc:
                log.exception(exc)
