"""The classic builder (moby's ``builder/dockerfile``): see runtime/dockerapi/__init__.py."""
