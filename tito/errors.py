"""The one base class of the problems tito reports to a user (bad source, unknown module, conflict...).

Commands wrap their body in `tito.console.reports_errors`: any TitoError becomes a clear message and
exit code 2, never a traceback.
"""


class TitoError(Exception):
    """A problem the user can fix; its message says what was wrong and where."""
