"""Every notebook in notebooks/ runs headless (nbclient, a real ipykernel) against the live gateway without an error."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A `python3` kernel spec running this interpreter, whatever else the machine has installed."""
    root = tmp_path_factory.mktemp("kernels")
    (root / "python3").mkdir()
    (root / "python3" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(root)], ensure_native_kernel=False)


def execute(path: Path, kernel_specs: KernelSpecManager, env: dict) -> nbformat.NotebookNode:
    """Run a notebook top to bottom, as `Run all` would; raises on the first unexpected error."""
    notebook = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(notebook, km=manager, timeout=120, store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                        **env})
    return notebook


@pytest.fixture(scope="module")
def notebook_env(gateway) -> dict:
    """What a user sets before opening the notebooks: the gateway, a fresh key, a model, the admin token."""
    return {"ONEKEYLLM_BASE_URL": gateway.url, "ONEKEYLLM_API_KEY": gateway.create_key(budget="100")["key"],
            "ONEKEYLLM_MODEL": "echo-1", "ONEKEYLLM_ADMIN_TOKEN": gateway.admin_token}


@pytest.fixture(scope="module")
def executed(kernel_specs, notebook_env):
    """Each notebook run once for the module: name -> the executed notebook."""
    cache: dict = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in cache:
            cache[name] = execute(ROOT / "notebooks" / name, kernel_specs, notebook_env)
        return cache[name]

    return run


def outputs_of(notebook, needle: str) -> list:
    """The outputs of the first code cell whose source contains `needle`."""
    return next(c.outputs for c in notebook.cells if c.cell_type == "code" and needle in c.source)


def text_of(outputs: list) -> str:
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
        else:
            data = output.get("data", {})
            parts.append(data.get("text/markdown") or data.get("text/plain", ""))
    return "\n".join(parts)


def test_the_notebooks_are_all_tested():
    assert {p.name for p in NOTEBOOKS} == {"quickstart.ipynb", "usage_analysis.ipynb", "admin.ipynb",
                                           "data_exploration.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_error(path, executed):
    notebook = executed(path.name)
    errors = [c for c in notebook.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert all("raises-exception" in c.metadata.get("tags", []) for c in errors)


def test_quickstart_streams_into_one_display_and_threads(executed):
    notebook = executed("quickstart.ipynb")
    first = outputs_of(notebook, "what is an LLM gateway for?")
    assert [o.output_type for o in first] == ["display_data", "display_data"]  # the answer, then the quiet line
    assert first[0].data["text/markdown"] == "Echo: In one sentence: what is an LLM gateway for?"
    assert first[1].data["text/plain"].startswith("echo-1 · ") and "out tokens · $0" in first[1].data["text/plain"]
    assert "palmer penguins" in text_of(outputs_of(notebook, "Suggest {n_questions}"))
    assert "3 turn(s)" in text_of(outputs_of(notebook, "%onekey thread"))
    assert "ZeroDivisionError: division by zero" in text_of(outputs_of(notebook, "{Err[11]}"))
    assert '"object": "response"' in text_of(outputs_of(notebook, "--json"))
    assert notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


def test_admin_notebook_revokes_its_key(executed, notebook_env):
    notebook = executed("admin.ipynb")
    assert "OneKeyLLM error 401" in text_of(outputs_of(notebook, 'admin("DELETE"'))
    assert notebook_env["ONEKEYLLM_ADMIN_TOKEN"] not in json.dumps(notebook)


def test_data_exploration_asks_about_the_frame_the_chart_and_the_file(executed):
    notebook = executed("data_exploration.ipynb")
    first = text_of(outputs_of(notebook, "Which three questions"))
    assert "DataFrame of 273 rows × 5 columns (first and last 10 shown)" in first and "| Harbour" in first
    assert "Compare the stations in DataFrame of 3 rows × 3 columns" in text_of(outputs_of(notebook, "{by_station}"))
    spend = outputs_of(notebook, "%onekey spend")
    assert any("image/png" in o.get("data", {}) for o in spend) and "echo-1" in text_of(spend)
    assert "This notebook: 4 call(s)" in text_of(outputs_of(notebook, "%onekey session"))


def test_admin_notebook_without_the_admin_token_says_what_to_set(kernel_specs, notebook_env):
    from nbclient.exceptions import CellExecutionError

    env = {**notebook_env, "ONEKEYLLM_ADMIN_TOKEN": ""}
    with pytest.raises(CellExecutionError) as stopped:
        execute(ROOT / "notebooks" / "admin.ipynb", kernel_specs, env)
    assert "set ONEKEYLLM_ADMIN_TOKEN to the admin token" in str(stopped.value)
    assert "KeyError" not in str(stopped.value)
