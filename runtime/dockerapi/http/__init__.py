"""The Docker Engine API's HTTP side (moby's ``api/server``): see runtime/dockerapi/__init__.py."""
