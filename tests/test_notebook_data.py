"""The notebook for data scientists: `{df}`, `{fig}`, `--image`, `--file`, `%onekey spend` and `%onekey session`,
run through nbclient in a real kernel against the gateway; what reached the fake upstream is checked."""
from __future__ import annotations

import base64

import nbformat
import pytest
from test_notebooks import execute, kernel_specs, text_of  # noqa: F401 - kernel_specs is a fixture

MODEL = "nbdata-fake-1"
SCENARIO = "nbdata"  # labels this module's upstream account
CSV = "city,riders\nOslo,120\nLima,95\n"


@pytest.fixture(scope="module")
def data_model(gateway, upstream) -> str:
    gateway.create_model(MODEL, input_usd_per_mtok="0.15", output_usd_per_mtok="0.60")
    gateway.create_account(provider="openai", base_url=upstream.base_url("openai", SCENARIO), api_key="sk-fake-nbdata",
                           models=[MODEL])
    return MODEL


def code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source)


CELLS = [
    code("%load_ext notebook_ext\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
         "rides = pd.DataFrame({'city': ['Oslo', 'Lima', 'Pune'] * 20, 'riders': range(60)})"),
    code("%%respond --new\nWhich city has most riders in {rides}?"),
    code("fig, ax = plt.subplots(figsize=(3, 2))\nax.bar(['Oslo', 'Lima'], [120, 95])\nplt.close(fig)"),
    code("%%respond\nWhat does {fig} show?"),
    code("counts = rides['riders']"),
    code("%%respond --image fig\nDescribe the chart, and {counts}"),
    code(f"open('riders.csv', 'w').write({CSV!r})"),
    code("%%respond --file riders.csv\nSummarise the attached file."),
    code("from notebook_ext import Client\nClient().respond('From Python: {rides}', values={'rides': rides.head(2)},"
         " stream=False).text"),
    code("%onekey spend --by model"),
    code("%onekey session"),
]


@pytest.fixture(scope="module")
def ran(gateway, upstream, data_model, kernel_specs, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("nbdata")
    path = folder / "data.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=CELLS), path)
    before = len(upstream.requests)
    env = {"ONEKEYLLM_BASE_URL": gateway.url, "ONEKEYLLM_API_KEY": gateway.create_key(budget="5")["key"],
           "ONEKEYLLM_MODEL": data_model}
    notebook = execute(path, kernel_specs, env)
    sent = [r for r in upstream.requests[before:] if r.scenario == SCENARIO and r.path.endswith("/chat/completions")]
    return notebook, [r.body["messages"][-1]["content"] for r in sent]


def parts_of(content) -> list:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def texts(content) -> str:
    return " ".join(part.get("text", "") for part in parts_of(content) if part["type"] == "text")


def test_a_dataframe_reaches_upstream_as_a_compact_markdown_table(ran):
    notebook, sent = ran
    errors = [text_of(c.outputs) for c in notebook.cells if any(o.output_type == "error" for o in c.outputs)]
    assert errors == []
    table = texts(sent[0])
    assert table.startswith("Which city has most riders in DataFrame of 60 rows × 2 columns (first and last 10 shown)")
    assert "dtypes: city: " in table and "riders: int64" in table
    assert "| city" in table and "| 59 " in table and "| …" in table and "| 30 " not in table


def test_a_figure_reaches_upstream_as_an_image_part(ran):
    _, sent = ran
    for content in (sent[1], sent[2]):
        images = [part for part in parts_of(content) if part["type"] == "image_url"]
        assert len(images) == 1
        url = images[0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "What does [figure 1, attached as an image] show?" == texts(sent[1])
    assert "Series riders of 60 values" in texts(sent[2])


def test_a_file_is_uploaded_and_reaches_upstream_as_a_file_part(ran):
    _, sent = ran
    files = [part["file"] for part in parts_of(sent[3]) if part["type"] == "file"]
    assert len(files) == 1 and files[0]["filename"] == "riders.csv"
    assert base64.b64decode(files[0]["file_data"].split(",", 1)[1]).decode() == CSV


def test_client_respond_takes_values(ran):
    _, sent = ran
    assert texts(sent[4]).startswith("From Python: DataFrame of 2 rows × 2 columns")


def test_spend_is_a_frame_and_a_chart_and_session_counts_this_notebooks_calls(ran):
    notebook, _ = ran
    spend = next(c for c in notebook.cells if c.source.startswith("%onekey spend")).outputs
    assert any("image/png" in o.get("data", {}) for o in spend)
    frame_text = text_of(spend)
    assert MODEL in frame_text and "cost_usd" in frame_text
    session = text_of(next(c for c in notebook.cells if c.source.startswith("%onekey session")).outputs)
    assert "This notebook: 4 call(s)" in session and "$0.0" in session  # priced: not "$0"
