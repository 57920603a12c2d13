"""The API beyond the examples: exceptions and their messages (the CLI's lines), threads, Ctrl-C, show/ls, models,
utils, config and conf handling."""

import os
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


INTERRUPTED = textwrap.dedent('''
    import os, signal, sys, threading
    import bakthat
    from bakthat import events

    src, store = sys.argv[1], sys.argv[2]
    seen = threading.Event()

    def on_sigint(signum, frame):
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def ctrl_c(session_id):
        # Ctrl-C as the backup starts, from the backup's own thread; wait until Python has seen it.
        os.kill(os.getpid(), signal.SIGINT)
        assert seen.wait(60)

    events.before_backup += ctrl_c
    try:
        bakthat.backup(src, conf={"local_path": store})
    except KeyboardInterrupt as e:
        print("KeyboardInterrupt")
        sys.exit(3)
    print("not interrupted")
''')


def test_ctrl_c_raises_keyboardinterrupt_and_leaves_nothing(home, tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    with open(src / "sparse.bin", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of holes: seconds of packing, no disk used
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
    # With 0.6's extra filters (applied in Python) the lines still match their rows. Both backups may fall in
    # the same second, so the expected lines are the CLI's lines of the rows the filter keeps.
    lines = r.stdout.splitlines(keepends=True)
    cut = rows[-1].backup_date + 1
    bakthat.show(older_than=cut)
    expected = "".join(line for row, line in zip(rows, lines) if row.backup_date < cut)
    assert expected and capsys.readouterr().out == expected
    bakthat.show(older_than=rows[-1].backup_date)
    assert capsys.readouterr().out == ""
