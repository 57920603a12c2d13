"""``BakSyncer``: several hosts, one inventory, as 0.6's sync module. With a sync server (the profile's or the top
level ``sync: {url, username, password}``, or ``BakSyncer(api_url, auth)``) it speaks 0.6's protocol; without one it
syncs with the store's journal. Not here: the protocol (the Rust core's ``sync`` module).
"""

import bakthat
from bakthat import _native


class BakSyncer:
    """Syncs the inventory of a profile. ``api_url``/``auth`` override the config's sync server for this object
    (0.6's ``BakSyncer(api_url, auth)``, which raised TypeError in 0.6.0)."""

    def __init__(self, api_url=None, auth=None, profile="default", config=None, conf=None):
        self.profile = profile
        self.config = config
        self.conf = dict(conf or {})
        if api_url:
            self.conf["url"] = api_url
        if auth:
            self.conf["username"], self.conf["password"] = auth

    def _target(self):
        return bakthat._target(self.profile, self.config, self.conf)

    def sync(self, destination=None, password=None, rebuild=False):
        """Runs one sync; returns its counts (``inserted``, ``updated``, ...)."""
        return _native.sync(self._target(), destination=destination, password=password, rebuild=rebuild)

    def register(self):
        """0.6 registered this host with the sync server before its first sync; ``sync()`` does it when needed."""
        return None

    def sync_auto(self):
        """0.6 synced after every backup when ``sync.auto`` was set; the backup itself does that now."""
        return None

    def reset_sync(self):
        """Forgets the server state (client id, sync_ts): the next sync sends every row."""
        _native.reset_sync(self._target())
