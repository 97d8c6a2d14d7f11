"""The panel's one way to run logic: behind a progress dialog with Cancel, errors in a dialog."""

from __future__ import annotations

import slicer
from slicer.i18n import tr as _


def runWithProgress(title: str, work, statusLabel=None, cancelledText: str | None = None):
    """Run ``work(progressCallback)`` behind a progress dialog with a Cancel button.

    ``progressCallback(label, fraction) -> cancelled`` is the logic's hook: it shows the label
    and fraction and returns True once Cancel is pressed, and the logic then raises
    ``MedPrepLib.errors.CancelledError``, reported in ``statusLabel`` (``cancelledText``). Other
    errors are shown in a dialog (``tryWithErrorDisplay``). Returns the result of ``work`` or None.
    """
    from MedPrepLib.errors import CancelledError

    result = None
    with slicer.util.tryWithErrorDisplay(_("MedPrep failed."), waitCursor=True):
        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=100)

        def progressCallback(label: str, fraction: float) -> bool:
            dialog.labelText = label
            dialog.value = int(round(100 * fraction))
            slicer.app.processEvents()
            return bool(dialog.wasCanceled)

        try:
            result = work(progressCallback)
        except CancelledError:
            if statusLabel is not None:
                statusLabel.text = cancelledText or _("Cancelled.")
        finally:
            dialog.close()
    return result


def pathOrNone(path) -> str | None:
    """A path field's value for the logic: None when unset (the wrapper's empty path is ".")."""
    text = str(path) if path is not None else ""
    return None if text in ("", ".") else text
