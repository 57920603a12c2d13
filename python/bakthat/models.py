"""The inventory's rows as 0.6's models: ``Backups`` (``search``, ``match_filename``, ``to_dict``), and the read-only
``Inventory`` (Glacier archive ids) and ``Jobs`` (cold-storage retrieval jobs).

The inventory is the command line's (``$BAKTHAT_DB``, else ``~/.local/share/bakthat/inventory.sqlite``), read
through the native module; these classes never write it (0.6's ``set_deleted``/``upsert`` are ``bakthat.delete``
and the actions themselves).
"""

from datetime import datetime, timezone

from bakthat import _native

FIELDS = ("id", "backend", "backend_hash", "backup_date", "filename", "is_deleted", "last_updated", "metadata",
          "size", "stored_filename", "tags")


def _target(kwargs):
    from bakthat import _target

    return _target(kwargs.get("profile", "default"), kwargs.get("config"), kwargs.get("conf"), kwargs.get("cancel"))


def _read_only(what):
    from bakthat import BakthatError

    return BakthatError(f"Backups.{what}: inventory rows are read-only from Python; bakthat.backup, bakthat.delete, "
                        "KeyValue and bakthat.sync() write them")


class Backups:
    """One backup: 0.6's fields ``filename``, ``stored_filename``, ``backend``, ``backend_hash``, ``backup_date``
    and ``last_updated`` (UTC epochs), ``size``, ``tags`` (space separated), ``metadata`` (a dict), ``is_deleted``;
    and ``store`` (which store holds it).

    The objects ``search``/``show``/``ls`` return read their fields from the native rows on first use (listing
    10,000 backups builds no dicts): use ``to_dict()`` rather than ``vars()`` to see them all. Assigning a field
    changes this object only, never the inventory."""

    def __init__(self, **fields):
        for name in FIELDS:
            setattr(self, name, fields.get(name))
        self.store = fields.get("store", "")

    @classmethod
    def _from_row(cls, row):
        b = cls.__new__(cls)
        b.__dict__ = row
        return b

    @classmethod
    def _lazy(cls, rows):
        """One object per row of a native ``Rows``, each holding only its index until a field is read."""
        new = cls.__new__
        out = []
        append = out.append
        for i in range(len(rows)):
            b = new(cls)
            b.__dict__ = {"_src": (rows, i)}
            append(b)
        return out

    def _load(self):
        """Fills in the fields of a lazy row (keeping any assigned since); False when there is nothing to load.
        Another thread reading the same object meanwhile sees either the index (and loads too) or every field: the
        index goes last."""
        d = self.__dict__
        src = d.get("_src")
        if src is None:
            return False
        rows, i = src
        fields = rows.row(i)
        fields.update(d)
        d.update(fields)
        d.pop("_src", None)
        return True

    def __getattr__(self, name):
        # Only called for a name the object does not have (yet).
        if not name.startswith("__"):
            self._load()
            d = self.__dict__
            if name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self):
        self._load()
        return self.__dict__

    def __dir__(self):
        self._load()
        return super().__dir__()

    def __repr__(self):
        return f"<Backup: {self.stored_filename}>"

    def __eq__(self, other):
        return isinstance(other, Backups) and self.to_dict() == other.to_dict()

    def to_dict(self):
        """The fields as a dict (``store`` included)."""
        self._load()
        return dict(self.__dict__)

    def is_encrypted(self):
        return self.stored_filename.endswith(".enc") or bool((self.metadata or {}).get("is_enc"))

    def is_gzipped(self):
        return bool((self.metadata or {}).get("is_gzipped"))

    def set_deleted(self):
        """0.6's peewee write (used by its own delete): refused, the inventory is the core's. ``bakthat.delete``
        deletes a backup and marks its row."""
        raise _read_only("set_deleted()")

    def save(self, *args, **kwargs):
        """0.6's peewee write: refused (see ``set_deleted``)."""
        raise _read_only("save()")

    @classmethod
    def upsert(cls, **fields):
        """0.6's peewee write (used by its KeyValue and sync): refused; ``KeyValue.set_key`` and ``bakthat.sync()``
        record their rows themselves."""
        raise _read_only("upsert()")

    def list_files(self, path=None, password=None, **kwargs):
        """The files of this backup (``bakthat.list_files`` on its stored name)."""
        import bakthat

        return bakthat.list_files(self.stored_filename, path=path, password=password, **kwargs)

    @property
    def date(self):
        """``backup_date`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.backup_date, timezone.utc)

    @classmethod
    def search(cls, query="", destination="", **kwargs):
        """Live backups whose name or stored name holds ``query`` (a literal substring), in ``destination`` (one
        kind or a list; all when empty), with all of ``tags`` (a list or a space-separated string; whole words),
        newest change first. 0.6's keywords ``older_than``, ``backup_date`` and ``last_updated_gt`` filter too;
        ``profile``/``config``/``conf`` name the profile; ``include_deleted=True`` adds deleted rows."""
        return cls._search(query, destination, kwargs)

    @classmethod
    def _search(cls, query, destination, kwargs, lines=False):
        """``search``; with ``lines``, returns ``(backups, text)``: also the command line's ``show`` text of them."""
        if isinstance(destination, str):
            destination = [destination] if destination else []
        tags = kwargs.get("tags") or []
        if isinstance(tags, str):
            tags = tags.split()

        def epoch(key):
            value = kwargs.get(key)
            return int(value) if value else None

        rows, text = _native.show(_target(kwargs), query or None, destinations=list(destination), tags=list(tags),
                                  include_deleted=bool(kwargs.get("include_deleted")), lines=lines,
                                  older_than=epoch("older_than"), backup_date=epoch("backup_date"),
                                  last_updated_gt=epoch("last_updated_gt"))
        out = cls._lazy(rows)
        return (out, text) if lines else out

    @classmethod
    def match_filename(cls, filename, destination=None, **kwargs):
        """The newest live backup named ``filename`` (or with that stored name) in ``destination`` (any when
        None), or None."""
        row = _native.match_filename(_target(kwargs), filename, destination=destination or None)
        return None if row is None else cls._from_row(row)


class Inventory:
    """Glacier archive ids by stored name (read-only)."""

    def __init__(self, filename, archive_id, size=None):
        self.filename = filename
        self.archive_id = archive_id
        self.size = size

    def __repr__(self):
        return f"<Inventory: {self.filename} {self.archive_id}>"

    @classmethod
    def all(cls, **kwargs):
        """Every archive id the inventory knows."""
        return [cls(**r) for r in _native.glacier_inventory(_target(kwargs))]

    @classmethod
    def get_archive_id(cls, filename, **kwargs):
        """The archive id of ``filename`` (a stored name), or None."""
        return next((i.archive_id for i in cls.all(**kwargs) if i.filename == filename), None)


class Jobs:
    """Cold-storage jobs (Glacier retrievals, S3 restores) by stored name (read-only)."""

    def __init__(self, filename, job_id, backend=None, kind=None, status=None, created_at=None, ready_at=None):
        self.filename = filename
        self.job_id = job_id
        self.backend = backend
        self.kind = kind
        self.status = status
        self.created_at = created_at
        self.ready_at = ready_at

    def __repr__(self):
        return f"<Job: {self.filename} {self.job_id} {self.status}>"

    @classmethod
    def all(cls, **kwargs):
        return [cls(**r) for r in _native.jobs(_target(kwargs))]

    @classmethod
    def get_job_id(cls, filename, **kwargs):
        """The job id for ``filename``, or None."""
        return next((j.job_id for j in cls.all(**kwargs) if j.filename == filename), None)
