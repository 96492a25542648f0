"""Files: CF NetCDF and Zarr writers and readers, atomic writes."""
