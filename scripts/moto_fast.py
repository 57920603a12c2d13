"""moto's server with a configurable Glacier job delay; started by scripts/moto-server.sh.

Usage: GLACIER_JOB_DELAY=0.5 python moto_fast.py -H 127.0.0.1 -p PORT

moto hard-codes how long a Glacier job takes to complete (2 s expedited, 5 s standard, 10 s bulk). This launcher
keeps moto's own job set-up and only moves the completion time to GLACIER_JOB_DELAY seconds (a float, default 0.5)
after creation, whatever the tier, so tests of the retrieval flow do not wait 5 s per job.
"""

import datetime
import os
import sys

import moto.glacier.models as glacier_models

_DELAY = datetime.timedelta(seconds=float(os.environ.get("GLACIER_JOB_DELAY", "0.5")))
_original_init = glacier_models.Job.__init__


def _init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    self.et = self.st + _DELAY  # st: creation time, et: completion time (moto's names)


glacier_models.Job.__init__ = _init

# Fail at start-up, not in the middle of a test, if a moto upgrade changed what this patch relies on.
try:
    _probe = glacier_models.Job("Standard")
    assert _probe.et - _probe.st == _DELAY
except Exception as e:  # noqa: BLE001
    sys.exit(f"moto_fast: cannot patch moto's Glacier job delay ({e!r}); update scripts/moto_fast.py")

from moto.server import main  # noqa: E402  (import after the patch on purpose)

sys.exit(main())
