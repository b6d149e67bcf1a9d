import pytest
import torch as th


@pytest.fixture(autouse=True)
def _one_thread():
    # small recurrent nets run fastest on one thread, and tests stay reproducible
    th.set_num_threads(1)
