import pytest

from conr.engine.procedural import character


@pytest.fixture(scope="session")
def girl():
    """Procedural character 11 at half detail: the model the format tests write and read back."""
    return character(11, detail=0.5)[1]
