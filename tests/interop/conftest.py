"""The end-to-end fixtures (the scripted model as a process, a user's working directory) for interop tests."""

from tests.e2e.conftest import scripted_api, workdir

__all__ = ["scripted_api", "workdir"]
