"""Type stubs of bakthat._native, the Rust module under the bakthat package (see python/src/lib.rs)."""

from os import PathLike
from typing import Any, Callable, Optional, Union

class Cancel:
    """A token that stops the calls given it (``cancel=``) from any thread; they raise ``Cancelled``."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

Target = tuple[Optional[str], Optional[str], str, Optional[str], Optional[Cancel]]
Row = dict[str, Any]
Password = Union[str, bytes, None]

__version__: str

class BakthatError(Exception):
    exit_code: int

class ConfigError(BakthatError): ...
class PasswordError(BakthatError): ...
class BackupNotFound(BakthatError): ...
class StoreError(BakthatError): ...
class Cancelled(BakthatError): ...

class RetrievalPending(BakthatError):
    stored_filename: str
    state: str
    hint: Optional[str]
    job: Optional[dict[str, Any]]

def backup(
    target: Target,
    source: Union[str, PathLike[str]],
    destination: Optional[str] = None,
    tags: list[str] = ...,
    name: Optional[str] = None,
    password: Password = None,
    exclude_file: Optional[str] = None,
    reduced_redundancy: bool = False,
    key: Optional[str] = None,
) -> Row: ...
def restore(
    target: Target,
    name: str,
    destination: Optional[str] = None,
    password: Password = None,
    to: Optional[str] = None,
    force: bool = False,
) -> Row: ...
class Rows:
    """The rows of one ``show`` call, kept native; ``row(i)`` builds row ``i``'s dict."""

    def __len__(self) -> int: ...
    def row(self, i: int) -> Row: ...

def show(
    target: Target,
    query: Optional[str] = None,
    destinations: list[str] = ...,
    tags: list[str] = ...,
    include_deleted: bool = False,
    lines: bool = False,
    older_than: Optional[int] = None,
    backup_date: Optional[int] = None,
    last_updated_gt: Optional[int] = None,
) -> tuple[Rows, Optional[str]]: ...
def match_filename(target: Target, name: str, destination: Optional[str] = None) -> Optional[Row]: ...
def delete(target: Target, name: str, destination: Optional[str] = None, password: Password = None) -> Row: ...
def delete_older_than(
    target: Target, name: str, interval: str, destination: Optional[str] = None, password: Password = None
) -> list[Row]: ...
def rotate_backups(
    target: Target, name: str, destination: Optional[str] = None, password: Password = None
) -> list[Row]: ...
def ls(
    target: Target,
    name: str,
    path: Optional[str] = None,
    destination: Optional[str] = None,
    password: Password = None,
) -> dict[str, Any]:
    """``{stored_filename, backup_date, entries: [{path, kind, mode, uid, gid, size, mtime, mtime_utc, link?}]}``,
    as ``bakthat ls NAME --json``."""
    ...

def kv_set(target: Target, key: str, json_text: str, compress: bool = True, password: Password = None) -> None: ...
def kv_get(target: Target, key: str, password: Password = None) -> Optional[str]: ...
def kv_delete(target: Target, key: str) -> bool: ...
def kv_url(target: Target, key: str, expires_in: int, method: str = "GET") -> str: ...
def sync(
    target: Target, destination: Optional[str] = None, password: Password = None, rebuild: bool = False
) -> dict[str, Any]: ...
def reset_sync(target: Target) -> None: ...
def glacier_inventory(target: Target) -> list[dict[str, Any]]: ...
def jobs(target: Target) -> list[dict[str, Any]]: ...
def profile_conf(target: Target) -> str: ...
def interval_seconds(text: str) -> int: ...
def run_cli(argv: list[str]) -> int: ...
def _install_host(
    dispatch: Callable[[str, str, Optional[list[Row]], Optional[str]], None],
    setup_plugins: Callable[[str, str], None],
) -> bool: ...
