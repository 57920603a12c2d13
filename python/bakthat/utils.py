"""0.6's utility functions: interval strings (``3M2D``) to seconds, and timedelta seconds."""

from bakthat import _native


def _interval_string_to_seconds(interval_string):
    """Seconds in an interval string such as ``1M3W4h2s`` (units ``s m h D W M Y``; M is 30 days, Y 365). The empty
    string is 0, as in 0.6; anything else malformed raises BakthatError ("bad interval ...")."""
    if interval_string == "":
        return 0
    return _native.interval_seconds(interval_string)


def _timedelta_total_seconds(td):
    """``td.total_seconds()`` (0.6 kept this for Python 2.6)."""
    return td.total_seconds()
