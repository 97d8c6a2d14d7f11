"""MedPrepLib — clinical images (DICOM, NIfTI, NRRD, MHA/MHD) to reproducible deep-learning datasets.

Conventions used everywhere: physical space is LPS (DICOM/ITK), in millimetres; a volume is a
numpy array in (z, y, x) order with spacing, origin and direction in SimpleITK's meaning.
The library never imports Slicer, VTK or Qt.
"""

from .errors import MedPrepError
from .geometry import Geometry
from .volume import Volume

__version__ = "0.1.0"

__all__ = ["Geometry", "MedPrepError", "Volume", "__version__"]
