"""The package's ``bakthat`` command: the Rust command line, run in this process so that the profile's Python
plugins and ``bakthat.events`` callbacks see its actions. Arguments, output and exit codes are the Rust binary's."""

import logging
import sys


def main(argv=None):
    """Runs ``bakthat ARGS...``; exits with its code."""
    import bakthat
    from bakthat import _native

    # Plugins log through `logging` (self.log): show their info lines on stderr as the command line shows its own.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bakthat: %(message)s"))
    plugin_log = logging.getLogger("bakthat.plugin")
    plugin_log.addHandler(handler)
    plugin_log.setLevel(logging.INFO)
    # Python's prints (plugins', callbacks') and the core's lines share the terminal or pipe: keep their order.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    args = list(sys.argv if argv is None else argv)
    args[0] = "bakthat"
    assert bakthat.__version__
    sys.exit(_native.run_cli(args))


if __name__ == "__main__":
    main()
