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

    return _target(kwargs.get("profile", "default"), kwargs.get("config"), kwargs.get("conf"))


class Backups:
    """One backup: 0.6's fields ``filename``, ``stored_filename``, ``backend``, ``backend_hash``, ``backup_date``
    and ``last_updated`` (UTC epochs), ``size``, ``tags`` (space separated), ``metadata`` (a dict), ``is_deleted``;
    and ``store`` (which store holds it)."""

    def __init__(self, **fields):
        for name in FIELDS:
            setattr(self, name, fields.get(name))
        self.store = fields.get("store", "")

    @classmethod
    def _from_row(cls, row):
        b = cls.__new__(cls)
        b.__dict__ = row
        return b

    def __repr__(self):
        return f"<Backup: {self.stored_filename}>"

    def __eq__(self, other):
        return isinstance(other, Backups) and self.to_dict() == other.to_dict()

    def to_dict(self):
        """The fields as a dict (``store`` included)."""
        return dict(self.__dict__)

    def is_encrypted(self):
        return self.stored_filename.endswith(".enc") or bool((self.metadata or {}).get("is_enc"))

    def is_gzipped(self):
        return bool((self.metadata or {}).get("is_gzipped"))

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
        """``search``; with ``lines``, also the command line's ``show`` text of the rows."""
        if isinstance(destination, str):
            destination = [destination] if destination else []
        tags = kwargs.get("tags") or []
        if isinstance(tags, str):
            tags = tags.split()
        rows = _native.show(_target(kwargs), query or None, destinations=list(destination), tags=list(tags),
                            include_deleted=bool(kwargs.get("include_deleted")), lines=lines)
        text = None
        if lines:
            rows, text = rows
            rows = list(zip(rows, text))
        older_than = kwargs.get("older_than")
        backup_date = kwargs.get("backup_date")
        last_updated_gt = kwargs.get("last_updated_gt")
        if older_than or backup_date or last_updated_gt:
            def keep(r):
                r = r[0] if lines else r
                return ((not older_than or r["backup_date"] < older_than)
                        and (not backup_date or r["backup_date"] == backup_date)
                        and (not last_updated_gt or r["last_updated"] >= last_updated_gt))
            rows = [r for r in rows if keep(r)]
        if lines:
            text = "".join(line + "\n" for _, line in rows)
            rows = [r for r, _ in rows]
        new = cls.__new__
        out = []
        for r in rows:
            b = new(cls)
            b.__dict__ = r
            out.append(b)
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
