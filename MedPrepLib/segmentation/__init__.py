"""Labels from segmentation objects: DICOM SEG, RTSTRUCT and Slicer ``.seg.nrrd`` onto an image grid.

One room per source: :mod:`.segments` (the value types every reader returns), :mod:`.dicom_seg`
(DICOM SEG through highdicom), :mod:`.rtstruct` (RTSTRUCT contours rasterised by MedPrep),
:mod:`.seg_nrrd` (Slicer segmentations through slicerio), and :mod:`.label_table` (names ->
values across a dataset, and the overlap policy that turns segments into one label map).
"""
