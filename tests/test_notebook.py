"""The notebook (notebooks/two_dimensional_pooling.ipynb) runs from top to
bottom without an error, and is committed without outputs.

Its outputs are stripped so that its diffs show only what a person changed;
this suite executes it anyway, so stored outputs could only go stale. To run
just the notebook: `KERAS_BACKEND=jax pytest tests/test_notebook.py`.
"""

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from traitlets import default

from tests.conftest import BACKEND

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "two_dimensional_pooling.ipynb"
CELL_TIMEOUT_S = 240  # the whole notebook takes about a minute on two cores
STRIP_COMMAND = (
    "python -c \"import nbformat as n; p='notebooks/two_dimensional_pooling.ipynb'; "
    "nb=n.read(p, 4); [c.update(outputs=[], execution_count=None) for c in nb.cells "
    "if c.cell_type == 'code']; n.write(nb, p)\""
)


class ThisInterpreterKernel(AsyncKernelManager):
    """Starts the kernel in the interpreter running the tests, whatever kernel
    specs the machine has installed (a user-wide `python3` spec may point at
    another Python)."""

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self):
        return KernelSpecManager(kernel_dirs=[])  # only ipykernel's own spec, for sys.executable


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    with_outputs = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not with_outputs, f"code cells {with_outputs} hold outputs; strip them with:\n{STRIP_COMMAND}"


@pytest.mark.skipif(
    BACKEND != "jax",
    reason="the notebook sets KERAS_BACKEND=jax itself, so it runs once, in the jax suite",
)
def test_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel imports keras_jax_pool from this checkout, even if another copy is installed.
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        kernel_manager_class=ThisInterpreterKernel,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    # Raises CellExecutionError, with the cell and its traceback, if any cell fails.
    client.execute(env={**os.environ, "PYTHONPATH": python_path})
    assert list(tmp_path.iterdir()) == [], "the notebook writes only to its own temporary directory"
