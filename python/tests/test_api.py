"""The API beyond the examples: exceptions and their messages (the CLI's lines), threads, Ctrl-C, show/ls, models,
utils, config and conf handling."""

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

import bakthat
from bakthat import events
from bakthat.models import Backups
from bakthat.utils import _interval_string_to_seconds


def make_tree(path, files=1):
    path.mkdir()
    for i in range(files):
        (path / f"f{i}.txt").write_text(f"file {i}")
    return path


def sparse_tree(path):
    """A directory holding a 1 GiB sparse file: seconds of packing, no disk used."""
    path.mkdir()
    with open(path / "sparse.bin", "wb") as f:
        f.truncate(1 << 30)
    return path


def cli_error_line(cli, *args, env=None):
    r = cli(*args, env=env)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("bakthat: error: "), r.stderr
    return r.returncode, line[len("bakthat: error: "):]


def test_exceptions_carry_the_cli_line_and_exit_code(home, tmp_path, cli):
    with pytest.raises(bakthat.BackupNotFound) as e:
        bakthat.restore("nothing-here", to=tmp_path / "r")
    code, line = cli_error_line(cli, "restore", "nothing-here", "--to", str(tmp_path / "r"))
    assert str(e.value) == line and e.value.exit_code == code == 1
    assert isinstance(e.value, bakthat.BakthatError)

    src = make_tree(tmp_path / "docs")
    bakthat.backup(str(src), password="right")
    with pytest.raises(bakthat.PasswordError) as e:
        bakthat.restore("docs", password="wrong", to=tmp_path / "r2")
    code, line = cli_error_line(cli, "restore", "docs", "--to", str(tmp_path / "r2"),
                                env=dict(os.environ, BAKTHAT_PASSWORD="wrong"))
    assert str(e.value) == line
    assert not (tmp_path / "r2" / "docs").exists()

    (home / ".bakthat.yml").write_text("default:\n  default_destination: floppy\n")
    with pytest.raises(bakthat.ConfigError) as e:
        bakthat.show()
    code, line = cli_error_line(cli, "show")
    assert str(e.value) == line
    with pytest.raises(bakthat.ConfigError, match="floppy"):
        bakthat.backup(str(src))


def test_config_and_conf_dicts(home, tmp_path):
    src = make_tree(tmp_path / "data")
    other = tmp_path / "other-store"
    row = bakthat.backup(str(src), config={"work": {"local_path": str(other)}}, profile="work")
    assert os.listdir(other) and row["backend"] == "local"
    # conf lays keys over the file's profile
    row = bakthat.backup(str(src / "f0.txt"), conf={"compress": False, "local_path": str(other)},
                         custom_filename="raw", tags="a b")
    assert row["stored_filename"].startswith("raw.") and not row["stored_filename"].endswith(".tgz")
    with pytest.raises(bakthat.ConfigError):
        bakthat.backup(str(src), config={"x": {"compress": "maybe"}}, profile="x")
    with pytest.raises(bakthat.ConfigError):
        bakthat.show(profile="nope", config={"default": {}})
    assert [b.tags for b in bakthat.ls(tags=["a"])] == ["a b"]


def test_show_ls_models_and_utils(home, tmp_path, capsys):
    src = make_tree(tmp_path / "site", files=3)
    row = bakthat.backup(str(src), tags=["web", "daily"])
    rows = bakthat.show("sit")
    out = capsys.readouterr().out
    assert [b.stored_filename for b in rows] == [row["stored_filename"]]
    assert out.count("\n") == 1 and row["stored_filename"] in out and "(web daily)" in out
    b = rows[0]
    assert b.to_dict()["backup_date"] == row["backup_date"] and b.is_encrypted() is False
    assert repr(b) == f"<Backup: {row['stored_filename']}>"
    assert Backups.match_filename("site").stored_filename == row["stored_filename"]
    assert Backups.match_filename("nosuch") is None
    assert Backups.search(older_than=row["backup_date"]) == []
    assert bakthat.ls(tags="web nightly") == []
    assert _interval_string_to_seconds("2D1h") == 176400
    assert _interval_string_to_seconds("1M3W4h2s") == 4420802
    assert _interval_string_to_seconds("") == 0
    with pytest.raises(bakthat.BakthatError):
        _interval_string_to_seconds("1d")
    with pytest.raises(bakthat.BakthatError):
        bakthat.delete_older_than("site", "")
    assert bakthat.delete("nosuch") is False
    assert bakthat.delete("site") is True
    assert bakthat.show() == []
    assert [b.is_deleted for b in Backups.search(include_deleted=True)] == [True]


def test_a_before_callback_that_raises_stops_the_action(home, tmp_path):
    src = make_tree(tmp_path / "x")

    def refuse(session_id):
        raise ValueError("not today")

    def on(session_id, backup):
        raise AssertionError("on_backup ran")

    events.before_backup += refuse
    events.on_backup += on
    with pytest.raises(ValueError, match="not today"):
        bakthat.backup(str(src))
    assert bakthat.ls() == []
    events.before_backup -= refuse
    events.on_backup -= on

    def broken(session_id, backup):
        raise KeyError("after")

    events.on_backup += broken
    with pytest.raises(KeyError):
        bakthat.backup(str(src))
    assert len(bakthat.ls()) == 1  # the backup stands


def test_two_threads_back_up_at_once(home, tmp_path):
    a = make_tree(tmp_path / "a", files=20)
    b = make_tree(tmp_path / "b", files=20)
    barrier = threading.Barrier(2)

    def rendezvous(session_id):
        # Each backup's before_backup waits for the other's: both calls are running at once, which needs each
        # caller to have released the GIL (a serialised second call would break the barrier after 60 s).
        barrier.wait(timeout=60)

    events.before_backup += rendezvous
    results, errors = {}, []

    def run(src):
        try:
            results[src.name] = bakthat.backup(str(src))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r["filename"] for r in results.values()) == ["a", "b"]
    assert sorted(x.filename for x in bakthat.ls()) == ["a", "b"]


CTRL_C = textwrap.dedent('''
    import os, signal, sys, threading
    import bakthat
    from bakthat import events

    seen = threading.Event()

    def on_sigint(signum, frame):
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def ctrl_c(session_id):
        # Ctrl-C as a backup starts, from the backup's own thread; wait until Python has seen it.
        os.kill(os.getpid(), signal.SIGINT)
        assert seen.wait(60)
''')

INTERRUPTED = CTRL_C + textwrap.dedent('''
    src, store = sys.argv[1], sys.argv[2]
    events.before_backup += ctrl_c
    try:
        bakthat.backup(src, conf={"local_path": store})
    except KeyboardInterrupt as e:
        print("KeyboardInterrupt")
        sys.exit(3)
    print("not interrupted")
''')


def test_ctrl_c_raises_keyboardinterrupt_and_leaves_nothing(home, tmp_path):
    src = sparse_tree(tmp_path / "big")
    store = tmp_path / "store-int"
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    r = subprocess.run([sys.executable, str(script), str(src), str(store)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.strip() == "KeyboardInterrupt"
    assert bakthat.ls() == []
    left = os.listdir(store) if store.exists() else []
    assert [n for n in left if ".tgz" in n or n.startswith(".bakthat-tmp.")] == [], left


TWO_CALLS = CTRL_C + textwrap.dedent('''
    big, small, store, fifos = sys.argv[1:5]

    # The other call, in a thread: its before_backup hook says it runs, then waits until the main thread's call
    # has been interrupted and has returned (no sleeps: two FIFOs).
    started, go = os.path.join(fifos, "started"), os.path.join(fifos, "go")
    os.mkfifo(started)
    os.mkfifo(go)
    hook = f"echo up > {started}; cat {go} > /dev/null"
    other = {}

    def run_other():
        try:
            other["row"] = bakthat.backup(small, conf={"local_path": store, "hooks": {"before_backup": hook}})
        except BaseException as e:
            other["error"] = repr(e)

    t = threading.Thread(target=run_other)
    t.start()
    with open(started) as f:
        f.read()
    # The other call's before_backup has fired (callbacks run before hooks): ctrl_c only sees the main thread's.
    events.before_backup += ctrl_c
    try:
        bakthat.backup(big, conf={"local_path": store})
        print("big: not interrupted")
    except KeyboardInterrupt:
        print("big: KeyboardInterrupt")
    events.before_backup -= ctrl_c
    with open(go, "w") as f:
        f.write("go\\n")
    t.join()
    print("small:", other.get("row", {}).get("stored_filename") or other.get("error"))
''')



def test_ctrl_c_stops_only_the_main_threads_call(home, tmp_path):
    """Issue 14: the interrupt used to be one process-wide flag, so Ctrl-C in one call also killed the other
    thread's backup (its hook, then its I/O). Now each call has its own cancel token."""
    big = sparse_tree(tmp_path / "big")
    small = make_tree(tmp_path / "small")
    store = tmp_path / "store-two"
    fifos = tmp_path / "fifos"
    fifos.mkdir()
    script = tmp_path / "two_calls.py"
    script.write_text(TWO_CALLS)
    r = subprocess.run([sys.executable, str(script), str(big), str(small), str(store), str(fifos)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert lines[0] == "big: KeyboardInterrupt", (r.stdout, r.stderr)
    assert lines[1].startswith("small: small.") and lines[1].endswith(".tgz"), (r.stdout, r.stderr)
    stored = lines[1].split(" ", 1)[1]
    assert [b.stored_filename for b in bakthat.ls()] == [stored]
    left = sorted(os.listdir(store))
    assert stored in left, left
    assert [n for n in left if n.startswith(("big", ".bakthat-tmp."))] == [], left
    bakthat.restore("small", conf={"local_path": str(store)}, to=tmp_path / "back")
    assert (tmp_path / "back" / "small").is_dir()


def test_a_cancel_token_stops_its_call_and_no_other(home, tmp_path):
    big = sparse_tree(tmp_path / "big")
    token = bakthat.Cancel()
    assert not token.cancelled

    def cancel_it(session_id):
        # From the call's worker thread, once the backup is under way.
        token.cancel()

    events.before_backup += cancel_it
    with pytest.raises(bakthat.Cancelled) as e:
        bakthat.backup(str(big), cancel=token)
    events.before_backup -= cancel_it
    assert token.cancelled
    assert isinstance(e.value, bakthat.BakthatError) and e.value.exit_code == 130
    assert "interrupted" in str(e.value)
    assert bakthat.ls() == []
    store = home.parent / "store"
    left = os.listdir(store) if store.exists() else []
    assert [n for n in left if ".tgz" in n or n.startswith(".bakthat-tmp.")] == [], left
    # A cancelled token stays cancelled; calls without it run.
    with pytest.raises(bakthat.Cancelled):
        bakthat.backup(str(make_tree(tmp_path / "small")), cancel=token)
    assert bakthat.backup(str(tmp_path / "small"), cancel=bakthat.Cancel())["filename"] == "small"
    with pytest.raises(TypeError):
        bakthat.backup(str(tmp_path / "small"), cancel=True)


def test_a_pending_glacier_retrieval_carries_its_job(s3conf, tmp_path, cli):
    conf = dict(s3conf, glacier_vault=f"vault-{s3conf['s3_bucket']}", default_destination="glacier")
    src = make_tree(tmp_path / "cold")
    row = bakthat.backup(str(src), conf=conf)
    assert row["backend"] == "glacier"
    with pytest.raises(bakthat.RetrievalPending) as e:
        bakthat.restore("cold", conf=conf, to=tmp_path / "r")
    err = e.value
    assert isinstance(err, bakthat.BakthatError) and err.exit_code == 75
    assert err.stored_filename == row["stored_filename"]
    assert err.state.startswith(("in progress", "not started"))
    assert err.job and err.job["job_id"] and err.job["status"] == "pending"
    assert "Run the same command again later" in str(err)
    assert not (tmp_path / "r" / "cold").exists()


def test_show_prints_the_cli_lines(home, tmp_path, capsys, cli):
    src = make_tree(tmp_path / "web")
    bakthat.backup(str(src), tags="a b")
    bakthat.backup(str(src), password="pw")
    rows = bakthat.show()
    printed = capsys.readouterr().out
    r = cli("show")
    assert r.returncode == 0, r.stderr
    assert printed == r.stdout and len(rows) == 2
    # With 0.6's extra filters (applied with the query) the lines still match their rows. Both backups may fall in
    # the same second, so the expected lines are the CLI's lines of the rows the filter keeps.
    lines = r.stdout.splitlines(keepends=True)
    cut = rows[-1].backup_date + 1
    bakthat.show(older_than=cut)
    expected = "".join(line for row, line in zip(rows, lines) if row.backup_date < cut)
    assert expected and capsys.readouterr().out == expected
    bakthat.show(older_than=rows[-1].backup_date)
    assert capsys.readouterr().out == ""


def test_listed_backups_read_their_fields_on_first_use(home, tmp_path):
    """Issue 14: show() over 10,000 rows spent ~50 ms building a dict per row; rows from search/show/ls now hold an
    index into the native rows and build their fields when first read, with the same values."""
    src = make_tree(tmp_path / "lazy")
    bakthat.backup(str(src), tags="x y")
    expected = Backups.match_filename("lazy").to_dict()
    (b,) = bakthat.ls()
    assert set(vars(b)) == {"_src"}, "nothing is built before a field is read"
    b.tags = "assigned"  # an assignment before the first read is kept
    assert b.stored_filename == expected["stored_filename"]
    assert b.to_dict() == dict(expected, tags="assigned")
    assert "_src" not in b.to_dict()
    (fresh,) = Backups.search("lazy")
    assert repr(fresh) == f"<Backup: {expected['stored_filename']}>"
    (fresh,) = Backups.search("lazy")
    assert pickle.loads(pickle.dumps(fresh)).to_dict() == expected
    (fresh,) = Backups.search("lazy")
    assert copy.copy(fresh).to_dict() == expected and fresh.to_dict() == expected
    (fresh,) = Backups.search("lazy")
    assert fresh == Backups.match_filename("lazy") and "metadata" in dir(fresh)
    assert fresh.is_encrypted() is False and fresh.date.year >= 2026
    with pytest.raises(AttributeError):
        fresh.no_such_field
    # 0.6's peewee writes say what to use instead of an AttributeError.
    for write in (fresh.set_deleted, fresh.save, lambda: Backups.upsert(filename="x")):
        with pytest.raises(bakthat.BakthatError, match="read-only from Python; bakthat.backup, bakthat.delete"):
            write()
    assert Backups.match_filename("lazy").is_deleted is False


def test_list_files_is_what_the_cli_ls_prints(home, tmp_path, cli):
    src = make_tree(tmp_path / "site", files=2)
    (src / "sub").mkdir()
    (src / "sub" / "deep.txt").write_text("deep")
    os.symlink("f0.txt", src / "link")
    bakthat.backup(str(src))
    files = bakthat.list_files("site")
    r = cli("ls", "site")
    assert r.returncode == 0, r.stderr
    assert [f["path"] for f in files] == r.stdout.splitlines()
    by_path = {f["path"]: f for f in files}
    assert by_path["site/sub"]["kind"] == "dir"
    assert by_path["site/f1.txt"]["kind"] == "file" and by_path["site/f1.txt"]["size"] == len("file 1")
    assert by_path["site/link"]["kind"] == "symlink" and by_path["site/link"]["link"] == "f0.txt"
    assert [f["path"] for f in bakthat.list_files("site", path="site/sub")] == ["site/sub", "site/sub/deep.txt"]
    (row,) = bakthat.ls("site")
    assert row.list_files() == files
    with pytest.raises(bakthat.BakthatError, match="nope is not in"):
        bakthat.list_files("site", path="nope")
    with pytest.raises(bakthat.BackupNotFound):
        bakthat.list_files("absent")
    bakthat.backup(str(src), custom_filename="secret", password="pw")
    with pytest.raises(bakthat.PasswordError):
        bakthat.list_files("secret")
    assert [f["path"] for f in bakthat.list_files("secret", password="pw")] == r.stdout.splitlines()


def test_sync_and_the_helpers_enable_sync_fill_another_inventory(home, tmp_path, monkeypatch):
    # 0.6's bakthat.sync() and BakHelper.enable_sync() (which raised TypeError in 0.6.0); without a sync server
    # the inventory syncs with the store's journal.
    from bakthat.helper import BakHelper
    from bakthat.sync import BakSyncer

    row = bakthat.backup(str(make_tree(tmp_path / "shared")))
    monkeypatch.setenv("BAKTHAT_DB", str(tmp_path / "other-host.sqlite"))
    assert bakthat.ls() == []
    counts = bakthat.sync()
    assert counts["inserted"] == 1, counts
    assert [b.stored_filename for b in bakthat.ls()] == [row["stored_filename"]]
    assert bakthat.sync.BakSyncer is BakSyncer
    monkeypatch.setenv("BAKTHAT_DB", str(tmp_path / "third-host.sqlite"))
    with BakHelper("helper") as bh:
        bh.enable_sync()
        assert bakthat.ls() == []
    assert [b.stored_filename for b in bakthat.ls()] == [row["stored_filename"]]
