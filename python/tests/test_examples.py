"""bakthat 0.6's documented examples, in Python 3 syntax, each against the local store (the config file) and moto
S3 (a conf dict)."""

import os
import subprocess

import bakthat
from bakthat import events
from bakthat.helper import BakHelper
from bakthat.models import Backups

ROTATION = {"days": 7, "weeks": 4, "months": 3, "first_week_day": 5}


def with_rotation(conf):
    return dict(conf, rotation=ROTATION) if conf else {"rotation": ROTATION}


def test_bakhelper_context_manager_example(store_conf, tmp_path):
    conf = with_rotation(store_conf)
    before = os.getcwd()
    # 0.6's example, plus conf= to pick the store.
    with BakHelper("mybackup", tags=["mybackup"], conf=conf) as bh:
        with open("myfile.txt", "w") as f:
            f.write("mydata")
        tmpd = bh.tmpd
        assert os.getcwd() == tmpd
        assert os.path.basename(tmpd).startswith("mybackup_")
        row = bh.backup()
        deleted = bh.rotate()
    assert os.getcwd() == before
    assert not os.path.exists(tmpd)
    assert deleted == []
    assert row["filename"] == "mybackup"
    assert row["stored_filename"].startswith("mybackup.") and row["stored_filename"].endswith(".tgz")
    assert row["backend"] == ("s3" if store_conf else "local")
    assert set(row) >= {"stored_filename", "size", "metadata", "backend", "filename"}
    found = Backups.search("mybackup", tags="mybackup", conf=conf)
    assert [b.stored_filename for b in found] == [row["stored_filename"]]
    assert found[0].tags == "mybackup"
    # What it stored restores: the archive holds the temporary directory.
    out = tmp_path / "out"
    assert bakthat.restore("mybackup", conf=conf, to=out) is True
    (top,) = os.listdir(out)
    assert (out / top / "myfile.txt").read_text() == "mydata"


def test_bakhelper_leaves_nothing_on_an_exception(home):
    before = os.getcwd()
    try:
        with BakHelper("failing") as bh:
            tmpd = bh.tmpd
            open("partial.sql", "w").close()
            raise RuntimeError("dump failed")
    except RuntimeError:
        pass
    assert os.getcwd() == before
    assert not os.path.exists(tmpd)
    assert bakthat.ls() == []


def test_events_example(store_conf, tmp_path, capsys):
    mydir = tmp_path / "mydir"
    mydir.mkdir()
    (mydir / "a.txt").write_text("hello")

    def before_backup_callback(session_id):
        print(session_id, "before_backup")

    def on_backup_callback(session_id, backup):
        print(session_id, "on_backup", backup)

    events.before_backup += before_backup_callback
    events.on_backup += on_backup_callback
    row = bakthat.backup(str(mydir), conf=store_conf or None)
    assert bakthat.restore("mydir", conf=store_conf or None) is True

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    sid, what = lines[0].split()
    assert what == "before_backup"
    assert lines[1] == f"{sid} on_backup <Backup: {row['stored_filename']}>"
    assert open("mydir/a.txt").read() == "hello"


def test_every_event_fires_with_session_ids_and_results(home, tmp_path):
    seen = []
    for name in events.NAMES:
        hook = getattr(events, name)
        hook += (lambda n: lambda sid, *rest: seen.append((n, sid, rest)))(name)
    src = tmp_path / "site"
    src.mkdir()
    (src / "index.html").write_text("<p>")
    first = bakthat.backup(str(src))
    second = bakthat.backup(str(src))
    bakthat.restore("site", to=tmp_path / "r")
    assert bakthat.delete("site") is True
    assert bakthat.delete_older_than("site", "1Y") == []
    assert bakthat.rotate_backups("site", days=1) == []
    names = [n for n, _, _ in seen]
    assert names == ["before_backup", "on_backup"] * 2 + [
        "before_restore", "on_restore", "before_delete", "on_delete",
        "before_delete_older_than", "on_delete_older_than", "before_rotate_backups", "on_rotate_backups"]
    for (b, sid_b, _), (o, sid_o, _) in zip(seen[::2], seen[1::2]):
        assert sid_b == sid_o, (b, o)
    results = {n: rest for n, _, rest in seen if n.startswith("on_")}
    assert results["on_restore"][0].stored_filename == second["stored_filename"]
    assert results["on_delete"][0].stored_filename == second["stored_filename"]
    assert results["on_delete_older_than"] == ([],)
    assert seen[1][2][0].stored_filename == first["stored_filename"]


def test_bakhelper_plain_class_with_conf(s3conf, tmp_path):
    # 0.6's "BakHelper(conf=...)" example: no `with`, a path to back up.
    bakthat_conf = with_rotation(s3conf)
    data = tmp_path / "dir_to_backup"
    data.mkdir()
    (data / "f").write_text("x")
    bh = BakHelper(conf=bakthat_conf)
    row = bh.backup(str(data))
    assert row["backend"] == "s3" and row["filename"] == "dir_to_backup"
    assert bh.rotate() == []
    assert [b.filename for b in Backups.search(conf=bakthat_conf)] == ["dir_to_backup"]


def test_mysql_style_dump_script(store_conf, tmp_path):
    """A nightly dump job: a real dump command run in the helper's directory, an encrypted backup, rotation."""
    db = tmp_path / "app.db"
    subprocess.run(["sqlite3", str(db), "CREATE TABLE t (x INT); INSERT INTO t VALUES (42);"], check=True)
    conf = with_rotation(store_conf)
    with BakHelper("mysql", tags=["db", "nightly"], password="s3cret", conf=conf) as bh:
        with open("all.sql", "w") as out:
            subprocess.run(["sqlite3", str(db), ".dump"], stdout=out, check=True)
        row = bh.backup()
        bh.rotate()
    assert row["stored_filename"].endswith(".tgz.enc") and row["metadata"]["is_enc"] is True
    restored = tmp_path / "restored"
    bakthat.restore("mysql", password="s3cret", conf=conf, to=restored)
    (top,) = os.listdir(restored)
    assert "INSERT INTO t VALUES(42);" in (restored / top / "all.sql").read_text()
    try:
        bakthat.restore("mysql", password="wrong", conf=conf, to=tmp_path / "again")
    except bakthat.PasswordError as e:
        assert "wrong password" in str(e)
    else:
        raise AssertionError("a wrong password restored")
