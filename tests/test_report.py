"""make report as people use it: a sweep and a failure on the local backend,
the page opened in a real headless Chromium (overview, overlaid curves, the
sweep view with brushing, the table with sort, filter and columns; dark mode
and print), the FILTER grammar checked against make results', and the data
the page embeds. Screenshots go to test-output/ (docs/img/ holds the ones the
docs show)."""

import base64
import json
import os
import re
from pathlib import Path

import pytest
from conftest import make, status_rows, wait_for
from test_local_backend import LOCAL, error_line
from test_results import SCREENSHOTS, browser  # noqa: F401 (a fixture)

from expflow.runtime import module

SWEEP = """base: configs/default.yaml
set:
  training.epochs: 8
  training.seconds_per_epoch: 0
grid:
  optimizer.lr: [0.01, 0.1, 0.3]
  model.depth: [2, 4]
  model.name: [mlp, cnn]
"""


def page_data(page: Path) -> dict:
    """The JSON blob the report embeds."""
    return json.loads(page.read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0])


@pytest.fixture(scope="module")
def sweep_project(tmp_path_factory) -> Path:
    """12 points of a sweep and one experiment that fails with exit code 3, all finished."""
    from expflow import build_context, scaffold

    project = scaffold(build_context("report-demo", None, {}), tmp_path_factory.mktemp("rep"))
    (project / "configs" / "lr.yaml").write_text(SWEEP)
    make(project, "sweep", "SWEEP=configs/lr.yaml", "MAX_PARALLEL=2", env=LOCAL)
    make(project, "train", "EXP=broken", "SET=fail_with_exit_code=3 training.seconds_per_epoch=0", "SET_NEW=1",
         env=LOCAL)

    def finished():
        states = [row["STATE"] for row in status_rows(project, env=LOCAL).values()]
        return states.count("COMPLETED") == 12 and "FAILED" in states
    wait_for(finished, timeout=180, what="the sweep and the failure to finish")
    make(project, "report")
    return project


@pytest.fixture
def page(sweep_project, browser):  # noqa: F811 (the fixture imported above)
    browser.get((sweep_project / "results" / "report.html").as_uri())
    wait_for(lambda: browser.execute_script("return document.documentElement.dataset.ready"), timeout=20,
             what="the report to be drawn")
    yield browser
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def table_ids(driver):
    return [row.find_element("css selector", "td a").text for row in css(driver, "#results tbody tr")]


def column_texts(driver, name):
    headers = [th.text for th in css(driver, "#results thead th")]
    column = headers.index(name)
    return [row.find_elements("tag name", "td")[column].text for row in css(driver, "#results tbody tr")]


DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
DOCS_SHOTS = ("report-overview.png", "report-curves.png", "report-sweeps-brushed.png", "report-table.png",
              "report-curves-dark.png")


def shoot(driver, section, name):
    """A screenshot of one view in test-output/; with UPDATE_DOCS_IMG=1, the
    docs' copy too (docs/img/, 128 colours, at most 760 pixels high)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    element = driver.find_element("id", section)
    driver.execute_script("arguments[0].scrollIntoView()", element)
    element.screenshot(str(SCREENSHOTS / name))
    if name in DOCS_SHOTS and os.environ.get("UPDATE_DOCS_IMG") == "1":
        from PIL import Image

        image = Image.open(SCREENSHOTS / name).convert("RGB")
        image = image.crop((0, 0, image.width, min(image.height, 760)))
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(DOCS_IMG / name, optimize=True)


# ----------------------------------------------------------------- the file itself

def test_the_page_is_one_offline_file(sweep_project):
    text = (sweep_project / "results" / "report.html").read_text()
    assert not re.search(r"https?://|<link|\bsrc=|@import|url\(", text)  # nothing fetched
    assert text.count("<script") == 2 and text.count("</script>") == 2  # the data blob and the page's script
    data = page_data(sweep_project / "results" / "report.html")
    assert len(data["rows"]) == 13 and data["sweeps"] == [
        {"name": "lr", "params": ["model.depth", "model.name", "optimizer.lr"]}]
    names = [c["name"] for c in data["columns"]]
    assert names[:5] == ["id", "state", "model.depth", "model.name", "optimizer.lr"]  # the swept params first
    assert [c["name"] for c in data["charts"]] == ["val_acc", "loss"]  # the primary metric's chart first
    assert {c["name"]: c["log"] for c in data["charts"]} == {"val_acc": False, "loss": True}
    curve = data["curves"]["lr-0001"]["train"]
    assert curve["step"] == {"start": 100, "step": 100, "count": 8} and len(curve["metrics"]["loss"]) == 8
    failure = data["overview"]["failures"][0]
    assert failure["id"] == "broken" and failure["exit_code"] == "3"
    assert failure["tail"][-1] == "failing on purpose (fail_with_exit_code)"
    assert dict(data["overview"]["states"]) == {"COMPLETED": 12, "FAILED": 1}


def test_values_cannot_end_the_data_block(bake):
    project = bake()
    hostile = "</script><script>document.title='pwned'</script><!--"
    make(project, "new", "EXP=x", f"DESC={hostile}")
    (project / "experiments" / "x" / "train_metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    config = project / "experiments" / "x" / "config.json"
    config.write_text(json.dumps(dict(json.loads(config.read_text()), note=hostile)))
    make(project, "report")
    text = (project / "results" / "report.html").read_text()
    assert "pwned" in text and "<script>document.title" not in text and text.count("</script>") == 2
    data = page_data(project / "results" / "report.html")
    assert data["rows"][0][[c["name"] for c in data["columns"]].index("note")] == hostile


def test_columns_names_the_shown_columns_and_bad_ones_are_refused(sweep_project):
    make(sweep_project, "report", "COLUMNS=id,val_acc,optimizer.lr")
    data = page_data(sweep_project / "results" / "report.html")
    assert [c["name"] for c in data["columns"] if c["shown"]] == ["id", "optimizer.lr", "val_acc"]
    bad = make(sweep_project, "report", "COLUMNS=id,nope", check=False)
    assert error_line(bad) == "error: COLUMNS: no column 'nope'"
    make(sweep_project, "report")


# ----------------------------------------------------------------- in the browser

@pytest.mark.browser
def test_overview_and_screenshots_of_each_view(page):
    states = {b.get_attribute("data-state"): b.text.split()[0] for b in css(page, "#states button")}
    assert states == {"COMPLETED": "12", "FAILED": "1"}
    failure = css(page, "#failures details")[0]
    assert "broken FAILED, exit code 3" in failure.text
    assert "failing on purpose (fail_with_exit_code)" in failure.find_element("tag name", "pre").text
    assert css(page, "#best table") and css(page, "#best tbody tr")[0].text.startswith("1 lr-")
    assert "written 20" in page.find_element("id", "written").text
    for section in ("overview", "curves", "sweeps", "table"):
        shoot(page, section, f"report-{section}.png")


@pytest.mark.browser
def test_curves_overlaid_legend_hides_a_line_and_the_pointer_reads_values(page):
    from selenium.webdriver.common.action_chains import ActionChains

    charts = css(page, "#charts figure")
    assert [c.find_element("tag name", "h3").text for c in charts] == ["val_acc", "loss"]
    assert len(css(page, "#charts figure:first-child path.run")) == 13  # every run of the table, overlaid
    run = "lr-0001"
    lines = css(page, f'#charts path.run[data-run="{run}"]')
    assert len(lines) == 2 and all(line.is_displayed() for line in lines)
    button = page.find_element("css selector", f'#legend button[data-run="{run}"]')
    button.click()
    assert all("hidden" in p.get_attribute("class") for p in css(page, f'#charts path.run[data-run="{run}"]'))
    button = page.find_element("css selector", f'#legend button[data-run="{run}"]')
    assert button.get_attribute("aria-pressed") == "false"
    button.click()
    assert not any("hidden" in p.get_attribute("class") for p in css(page, f'#charts path.run[data-run="{run}"]'))
    svg = css(page, "#charts figure:first-child svg")[0]
    page.execute_script("arguments[0].scrollIntoView()", svg)
    ActionChains(page).move_to_element(svg).perform()
    tip = page.find_element("id", "tip")
    assert tip.is_displayed() and "val_acc at step" in tip.text
    assert re.search(r"lr-\d{4} 0\.\d+", tip.text)
    loss_log = css(page, '#charts input[data-log="1"]')[0]
    assert loss_log.is_selected()  # a loss starts on a log scale
    epoch = page.find_element("id", "x-axis")
    epoch.find_element("css selector", "option[value=epoch]").click()
    ticks = [t.text for t in css(page, "#charts figure:first-child svg > text")]
    assert "epoch" in ticks and "800" not in ticks  # by epoch, 0 to 7, not by step


@pytest.mark.browser
def test_selecting_a_row_highlights_its_curves(page):
    row = [r for r in css(page, "#results tbody tr") if r.text.startswith("lr-0005")][0]
    row.find_elements("tag name", "td")[1].click()
    assert "selected" in css(page, '#results tbody tr[class="selected"]')[0].get_attribute("class")
    for line in css(page, "#charts path.run"):
        assert ("hot" in line.get_attribute("class")) == (line.get_attribute("data-run") == "lr-0005")
    assert all("faded" in p.get_attribute("class") for p in css(page, '#charts path.run:not([data-run="lr-0005"])'))
    page.find_element("id", "select-none").click()
    assert not css(page, "#charts path.run.faded")
    link = [a for a in css(page, "#results tbody td a") if a.text == "lr-0002"][0]
    link.click()  # a row's link to its curves: selected, and the page at the curves
    assert page.execute_script("return location.hash") == "#curves"
    assert all("hot" in p.get_attribute("class") for p in css(page, '#charts path.run[data-run="lr-0002"]'))
    assert css(page, '#legend button.selected[data-run="lr-0002"]')


@pytest.mark.browser
def test_sort_filter_and_hidden_columns(page, sweep_project):
    assert column_texts(page, "val_acc") == sorted(column_texts(page, "val_acc"), key=float, reverse=True)  # best first
    header = [th for th in css(page, "#results thead th") if th.text == "optimizer.lr"][0]
    header.click()
    assert [float(v) for v in column_texts(page, "optimizer.lr")] == sorted(float(v) for v in column_texts(
        page, "optimizer.lr"))
    [th for th in css(page, "#results thead th") if th.text.startswith("optimizer.lr")][0].click()
    assert column_texts(page, "optimizer.lr")[0] == "0.3"
    box = page.find_element("id", "filter")
    for text in ("optimizer.lr<0.2 model.name=cnn", "state!=COMPLETED", "model.depth>=4 val_acc>0.9"):
        box.clear()
        box.send_keys(text + "\n")
        make(sweep_project, "results", f"FILTER={text}", "COLUMNS=id")
        wanted = (sweep_project / "results" / "results.csv").read_text().split()[1:]
        assert sorted(table_ids(page)) == sorted(wanted), text
        assert page.find_element("id", "filter-count").text.startswith(f"{len(wanted)} of 13 runs")
    box.clear()
    box.send_keys("nope=1\n")
    made = error_line(make(sweep_project, "results", "FILTER=nope=1", check=False))
    assert page.find_element("id", "filter-error").text == made == "error: FILTER: no column 'nope'"
    box.clear()
    box.send_keys("\n")
    assert len(table_ids(page)) == 13
    page.find_element("css selector", "#table-controls summary").click()
    page.find_element("css selector", f'#table-controls input[data-column="{column_index(page, "loss")}"]').click()
    assert "loss" not in [th.text for th in css(page, "#results thead th")]


def column_index(driver, name):
    return [c["name"] for c in driver.execute_script(
        "return JSON.parse(document.getElementById('report-data').textContent).columns")].index(name)


@pytest.mark.browser
def test_brushing_the_parallel_coordinates_filters_the_table(page):
    from selenium.webdriver.common.action_chains import ActionChains

    assert len(css(page, "#pc path.pc")) == 12 and len(css(page, "#sweep-charts .scatter")) == 3
    axis = page.find_element("css selector", '#pc g.pc-axis[data-axis="optimizer.lr"] rect.pc-hit')
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", axis)
    height = axis.rect["height"]
    # from the top of the axis down a fifth: the largest learning rate only
    ActionChains(page).move_to_element_with_offset(axis, 0, -height / 2 + 2).click_and_hold().move_by_offset(
        0, height / 5).release().perform()
    assert sorted(column_texts(page, "optimizer.lr")) == ["0.3"] * 4
    assert len(css(page, "#pc path.pc.out")) == 8 and css(page, "#pc rect.brush")
    assert page.find_element("id", "filter-count").text.startswith("4 of 13 runs")
    shoot(page, "sweeps", "report-sweeps-brushed.png")
    page.find_element("id", "clear-brush").click()
    assert len(table_ids(page)) == 13


@pytest.mark.browser
def test_dark_mode_and_print(page, sweep_project):
    dark = [{"name": "prefers-color-scheme", "value": "dark"}]
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": dark})
    background = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 24, 27)"
    shoot(page, "curves", "report-curves-dark.png")
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print", "features": []})
    assert not page.find_element("id", "filter-form").is_displayed()
    assert page.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    pdf = base64.b64decode(page.execute_cdp_cmd("Page.printToPDF", {"printBackground": False})["data"])
    assert pdf.startswith(b"%PDF")
    SCREENSHOTS.mkdir(exist_ok=True)
    (SCREENSHOTS / "report.pdf").write_bytes(pdf)


# ----------------------------------------------------------------- one FILTER grammar

RECORDS = [
    {"id": "a", "state": "COMPLETED", "lr": "0.1", "depth": "4", "name": "res net", "flag": "true", "loss": "1e-05",
     "note": "", "tag": "it's", "big": "12345678901234567890"},
    {"id": "b", "state": "FAILED", "lr": "0.3", "depth": "2", "name": "mlp", "flag": "false", "loss": "0.5",
     "note": "x", "tag": "50", "big": "7"},
    {"id": "c", "state": "RUNNING", "lr": "", "depth": "007", "name": "'quoted'", "flag": "", "loss": "inf",
     "note": "[1, 2]", "tag": "a=b", "big": "-0"},
    {"id": "d", "state": "COMPLETED", "lr": "1e+06", "depth": "10", "name": "cnn", "flag": "True", "loss": "nan",
     "note": "1_000", "tag": "\u00e9t\u00e9", "big": "0"},
]
FILTERS = [
    "", "state=COMPLETED", "state!=COMPLETED", "lr<0.2", "lr>=0.3", "lr<=0.1", "lr>0", "lr=", "lr!=",
    "depth=4", "depth=04", "depth=+7", "depth>5", "depth<10", "name='res net'", 'name="res net"', "name=res",
    "name=''quoted''", "flag=true", "flag=True", "flag=yes", "loss<0.001", "loss=1e-5", "loss=0.00001",
    "loss>1", "loss=.inf", "loss=.nan", "note=1000", "note=[1, 2]", "note=~", "note=null", "tag='50'", "tag=50",
    "tag=a=b", "tag=it's", "tag=\u00e9t\u00e9", "big=12345678901234567890", "big=-0", "big=0", "lr=1000000",
    "lr=1e6", "lr=1.0e6", "lr=0.30000000001", "depth>=2 state=COMPLETED", "  state=FAILED   lr>0.2 ",
    "nope=1", "state", "=x", "state=='x'", "lr<<1", "name='open", 'name="bad\\q"', "name='it's'", "a!b=1",
    "lr=1e999", "depth<=1e1",
]


@pytest.mark.browser
def test_the_page_and_make_results_read_filter_alike(page):
    harvest, files = module("harvest"), module("files")
    names = list(RECORDS[0])
    python = []
    for text in FILTERS:
        try:
            conditions = harvest.parse_filter(text, names)
            python.append({"ids": [r["id"] for r in RECORDS if harvest.matches(r, conditions)]})
        except files.ProjectError as exc:
            python.append({"error": str(exc)})
    browser_side = page.execute_script("""
        var api = window.expflowReport, records = arguments[0], names = arguments[1];
        return arguments[2].map(function (text) {
          try {
            var conditions = api.parseFilter(text, names);
            return {ids: records.filter(function (r) {
              return api.matches(function (c) { return r[c]; }, conditions); }).map(function (r) { return r.id; })};
          } catch (e) { if (e instanceof api.FilterError) { return {error: e.message}; } throw e; }
        });""", RECORDS, names, FILTERS)
    for text, ours, theirs in zip(FILTERS, python, browser_side):
        if "error" in ours and "double-quoted string (" in ours["error"]:  # Python adds its JSON parser's words
            assert theirs["error"] == ours["error"].split(" (")[0], text
        else:
            assert theirs == ours, text
    assert sum("error" in p for p in python) >= 8 and sum(len(p.get("ids", [])) not in (0, 4) for p in python) >= 20


@pytest.mark.browser
def test_a_filter_value_is_written_as_python_s_repr(page):
    """The page reads FILTER values as make results does (tables.format_value: repr)."""
    values = [0.1, 1e-05, 123456.7, 1234567.0, 0.000123456789, -2.5e-10, 1e16, 3.14159265, 100.0, 0.30000000001,
              -0.0, 0.0001, 1e15, 9.999999999999999e15, 1.5e-300, 2.0 ** 60, 5e-324]
    assert page.execute_script("return arguments[0].map(window.expflowReport.formatRepr)", values) == [
        repr(v) for v in values]


@pytest.mark.browser
def test_format_of_a_float_is_python_s(page):
    values = [0.1, 1e-05, 123456.7, 1234567.0, 0.000123456789, -2.5e-10, 1e16, 3.14159265, 100.0, 0.30000000001]
    ours = [f"{v:.6g}" for v in values]
    assert page.execute_script("return arguments[0].map(window.expflowReport.formatG6)", values) == ours


# ----------------------------------------------------------------- curves for display

def test_long_curves_are_thinned_for_display_and_keep_their_spikes(tmp_path):
    curves = module("curves")
    path = tmp_path / "train_metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0 / (s + 1)}) for s in range(10000)]
    lines[5003] = json.dumps({"step": 5003, "loss": 50.0})  # a spike
    lines.append(json.dumps({"step": 10000, "val_loss": 0.5}))  # a metric of its own line
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    table = curves.read_stage(str(path))
    assert len(table["metrics"]["loss"]) == 10001 and table["metrics"]["val_loss"][-1] == 0.5
    assert table["metrics"]["loss"][-1] is None and table["metrics"]["val_loss"][0] is None
    shown = curves.for_page(table, 2000)
    assert 500 <= len(shown["metrics"]["loss"]) <= 2000
    assert 50.0 in shown["metrics"]["loss"] and shown["step"][-1] == 10000 and shown["step"][0] == 0
    assert path.read_bytes() == before  # the data file is never changed
    short = curves.for_page(curves.read_stage(str(path)), 20000)
    assert short["step"] == {"start": 0, "step": 1, "count": 10001}  # evenly spaced: three numbers
    assert curves.points(table, "val_loss", "epoch") == [(10000, 0.5)]  # no epoch: by step
