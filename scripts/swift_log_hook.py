"""Swift logging hook for scripts/swift-aio.sh: log to stderr instead of syslog.

Named in the generated configs as `log_custom_handlers = swift_log_hook.to_stderr` (with this directory on
PYTHONPATH). Without it, Swift logs to /dev/log and, where that socket does not exist (as on CI machines), falls
back to UDP datagrams to localhost:514 from a socket bound to 0.0.0.0. This hook closes that syslog handler
before anything is sent and writes the same lines to stderr, which swift-aio.sh sends to one log file per server.
"""

import logging
import logging.handlers
import sys


def to_stderr(conf, name, log_to_console, log_route, fmt, logger, adapted_logger):
    """Swift calls this at the end of get_logger() for every logger it makes."""
    formatter = None
    for handler in list(logger.handlers):
        if isinstance(handler, logging.handlers.SysLogHandler):
            formatter = handler.formatter
            logger.removeHandler(handler)
            handler.close()
    if formatter is not None and not any(
        isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.__stderr__
        for h in logger.handlers
    ):
        console = logging.StreamHandler(sys.__stderr__)
        console.setFormatter(formatter)
        logger.addHandler(console)
