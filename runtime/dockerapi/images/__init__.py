"""A sandbox engine's images (moby's ``image/``, ``layer/``, ``distribution/``): see runtime/dockerapi/__init__.py."""
