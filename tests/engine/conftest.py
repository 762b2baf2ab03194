import pytest

from conr.engine.procedural import character


@pytest.fixture(scope="session")
def girl():
    """Procedural character 114 at half detail (body height close to the motions' own, so retargeted root
    motion and direct posing agree): the model the format tests write and read back."""
    return character(114, detail=0.5)[1]
