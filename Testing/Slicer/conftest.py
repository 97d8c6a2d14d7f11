"""Scripts here run inside the Slicer application, not under pytest: never import them."""

collect_ignore_glob = ["*.py"]
