"""Plugins: 0.6's TimerPlugin from a profile's `plugins:`, through the Python API and through the package's
`bakthat` command (the CLI in-process); a class that is not a Plugin; event attributes."""

import logging
import os
import textwrap

import pytest

import bakthat
from bakthat import plugin
from bakthat.plugin import Plugin

TIMER = textwrap.dedent('''
    import time
    from bakthat.plugin import Plugin

    class TimerPlugin(Plugin):
        """ A basic timer plugin that log the time for each action. """
        def activate(self):
            self.start = {}
            self.stop = {}
            self.before_backup += self.before_backup_callback
            self.on_backup += self.on_backup_callback

        def before_backup_callback(self, session_id):
            self.start[session_id] = time.time()
            self.log.info("before_backup {0}".format(session_id))

        def on_backup_callback(self, session_id, backup):
            self.stop[session_id] = time.time()
            self.log.info("on_backup {0} {1}".format(session_id, backup))
            self.log.info("Job duration: {0}s".format(self.stop[session_id] - self.start[session_id]))

    class NotAPlugin:
        pass
''')


@pytest.fixture
def timer_profile(home, tmp_path):
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "timer_plugin.py").write_text(TIMER)
    store = tmp_path / "store"
    (home / ".bakthat.yml").write_text(
        f"default:\n  local_path: {store}\n  plugins: [timer_plugin.TimerPlugin]\n  plugins_dir: {plugins_dir}\n"
        f"broken:\n  local_path: {store}\n  plugins: [timer_plugin.NotAPlugin]\n  plugins_dir: {plugins_dir}\n")
    src = tmp_path / "mydir"
    src.mkdir()
    (src / "f").write_text("x")
    return src


def test_cli_runs_the_timer_plugin(timer_profile, cli):
    r = cli("backup", "--prompt", "no", str(timer_profile), cwd=str(timer_profile.parent))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    before = [line for line in lines if "before_backup" in line]
    on = [line for line in lines if "on_backup" in line]
    assert len(before) == 1 and len(on) == 1, r.stderr
    sid = before[0].split()[-1]
    assert on[0].startswith(f"bakthat: on_backup {sid} <Backup: mydir."), on
    assert any(line.startswith("bakthat: Job duration: ") for line in lines), r.stderr
    assert "stored mydir." in r.stdout


def test_cli_refuses_a_class_that_is_not_a_plugin(timer_profile, cli):
    r = cli("-p", "broken", "backup", "--prompt", "no", str(timer_profile))
    assert r.returncode == 1
    assert "timer_plugin.NotAPlugin is not a bakthat.plugin.Plugin subclass" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_api_runs_the_timer_plugin_once_per_process(timer_profile, caplog):
    caplog.set_level(logging.INFO, logger="bakthat.plugin")
    bakthat.backup(str(timer_profile))
    bakthat.backup(str(timer_profile))
    durations = [r for r in caplog.records if r.getMessage().startswith("Job duration: ")]
    assert len(durations) == 2  # activated once: one line per backup, not one per activation
    assert list(plugin._loaded) == ["timer_plugin.TimerPlugin"]


def test_plugin_attributes():
    class P(Plugin):
        def activate(self):
            self.before_backup += self.cb

        def cb(self, session_id):
            pass

    p = P({"x": 1})
    assert p.conf == {"x": 1}
    p.activate()
    assert p.cb in list(bakthat.events.before_backup)
    bakthat.events.before_backup -= p.cb
    with pytest.raises(AttributeError, match="Event on_bakup does not exist!"):
        p.on_bakup
    assert p.log.name == "bakthat.plugin.P"
