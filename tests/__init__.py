"""The test suite; a package, so that `tests.conftest` resolves to it from any directory."""
