"""Plugins, as in bakthat 0.6: a class listed as ``module.Class`` under a profile's ``plugins:`` (imported from
``sys.path`` and the profile's ``plugins_dir``, default ``~/.bakthat_plugins``), made with the profile's settings and
activated once per process; ``deactivate()`` runs at exit.

    from bakthat.plugin import Plugin

    class TimerPlugin(Plugin):
        def activate(self):
            self.start = {}
            self.before_backup += self.before_backup_callback
            self.on_backup += self.on_backup_callback

        def before_backup_callback(self, session_id):
            self.start[session_id] = time.time()
            self.log.info("before_backup {0}".format(session_id))

        def on_backup_callback(self, session_id, backup):
            self.log.info("on_backup {0} {1}".format(session_id, backup))
            self.log.info("Job duration: {0}s".format(time.time() - self.start[session_id]))

Plugins run for actions of the Python API and of the package's ``bakthat`` command (the command line run
in-process). The Rust ``bakthat`` binary cannot import Python: for a profile with plugins it prints one line saying
to use the package's command. Not here: the events themselves (``bakthat.events``).
"""

import atexit
import importlib
import json
import logging
import os
import sys

from bakthat import events as _events

DEFAULT_PLUGINS_DIR = "~/.bakthat_plugins"

log = logging.getLogger("bakthat.plugin")


class Plugin:
    """Base class of plugins. Subclasses implement ``activate()`` (and may implement ``deactivate()``).

    ``self.conf`` is the profile's settings (a dict), ``self.log`` a logger named after the plugin, ``self.events``
    the ``bakthat.events`` module, and every event is an attribute: ``self.before_backup += callback``. Any other
    unknown attribute raises ``AttributeError("Event X does not exist!")``.
    """

    def __init__(self, conf):
        self.conf = conf
        self.events = _events
        self.log = logging.getLogger(f"bakthat.plugin.{type(self).__name__}")

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _events.hook(attr)

    def activate(self):
        raise NotImplementedError("Plugin should implement this!")

    def deactivate(self):
        raise NotImplementedError("Plugin may implement this!")


_loaded = {}


def load_class(full_class_string):
    """The class named by ``"package.module.Class"``."""
    module_path, _, class_name = full_class_string.rpartition(".")
    if not module_path:
        raise ImportError(f"plugin {full_class_string!r} must be written module.Class")
    module = importlib.import_module(module_path)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"module {module_path} has no class {class_name}") from None


def setup_plugins(conf):
    """Imports and activates the plugins ``conf`` lists (each class once per process)."""
    plugins_dir = os.path.expanduser(conf.get("plugins_dir") or DEFAULT_PLUGINS_DIR)
    if os.path.isdir(plugins_dir) and plugins_dir not in sys.path:
        sys.path.append(plugins_dir)
    for name in conf.get("plugins") or []:
        if name in _loaded:
            continue
        cls = load_class(name)
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise TypeError(f"plugin {name} is not a bakthat.plugin.Plugin subclass")
        p = cls(conf)
        p.activate()
        _loaded[name] = p
        atexit.register(_deactivate, p)


def _deactivate(p):
    try:
        p.deactivate()
    except NotImplementedError:
        pass


def _setup(profile_name, conf_json):
    """Called by the core for each new client whose profile lists plugins."""
    setup_plugins(json.loads(conf_json))
