"""Array algorithms on voxel grids, the engine the recipe steps call (as nibabel's ``processing``).

* :mod:`.resample` — separable resampling onto exact grids (linear, B-spline, nearest,
  label-safe), in physical space (LPS mm);
* :mod:`.reorient` — permuting and flipping index axes to an orientation code, exactly;
* :mod:`.blockwise` — cache-sized voxel passes and exact sums for the intensity steps;
* :mod:`.threads` — the one thread pool, sized by ``MEDPREP_THREADS``.

Nothing here knows about recipes, files or DICOM: volumes and arrays in, volumes and arrays out.
"""
