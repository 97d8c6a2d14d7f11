"""DICOM: discovery of image stacks in folders or a Slicer DICOM database, and loading them.

See :mod:`MedPrepLib.dicom.stack` for the flow (header -> stack -> volume) and the objects
that travel along it.
"""
