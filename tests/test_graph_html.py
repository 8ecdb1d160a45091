"""`nncompile graph SPEC --html` (issue 26) in a real browser: headless Chromium (Debian's
`chromium`, driven by Playwright) loads the page from file:// with every other request refused,
and the test reads the page: its boxes, the shapes on its edges (those of `nncompile summary`),
a block folded as "x N" that expands, a click that shows the node's spec line, the MACs of a
block's inner node and of a backbone's stage, a node with LoRA adapters coloured as such with
its adapters in its details and in the plan's table. The screenshot is
kept in build/test-artifacts/. Skipped where Chromium or Playwright is missing (`make browser`
installs Chromium)."""

import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from nncompile import compile_spec
from nncompile.tools.graph_html import page

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium (`make browser` installs it)"
)
ARTIFACTS = ROOT / "build" / "test-artifacts"

SPEC = """\
nncompile: 1
name: Reviewed
inputs:
  image: [3, 64, 64]
blocks:
  Res:
    params: [c]
    nodes:
      conv: {op: Conv2d, out_channels: $c, kernel_size: 3, padding: 1}
      act: ReLU
      residual: {op: add, in: [act, x]}
nodes:
  pre:
    op: Res
    c: 3
    repeat: 2
    adapters: [{kind: lora, target: "*.conv", r: 2, alpha: 4}]
  resnet:
    op: torchvision.resnet18
    weights: DEFAULT
    head: remove
    unfreeze:
      at_epoch: {layer4: 2}
  fc1: {op: Linear, out_features: 256}
  relu: {op: ReLU}
  fc2: {op: Linear, out_features: 10}
outputs: {logits: fc2}
task:
  kind: classification
  optimizer: {name: AdamW, lr: 1.0e-3}
"""


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, path: Path):
    """The page loaded from file://, every other request refused and recorded."""
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.refused, tab.errors = [], []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))

    def route(request_route):
        if request_route.request.url.startswith("file://"):
            request_route.continue_()
        else:
            tab.refused.append(request_route.request.url)
            request_route.abort()

    tab.route("**/*", route)
    tab.goto(path.as_uri())
    tab.wait_for_selector("body[data-rendered=true]")
    return tab


def titles(tab) -> list[str]:
    return tab.locator("g.vertex").evaluate_all("els => els.map(e => e.dataset.title)")


def test_the_page_shows_the_model(browser, tmp_path):
    spec = tmp_path / "reviewed.yaml"
    spec.write_text(SPEC)
    result = compile_spec(spec)
    path = tmp_path / "model.html"
    path.write_text(page(result))
    tab = open_page(browser, path)

    assert titles(tab) == ["image", "pre", "resnet", "fc1", "relu", "fc2", "logits"]
    # the edge labels are the summary's shapes: each node's inputs, then each output's
    summary = result.summary()
    shapes = [shape for row in summary.rows for shape in row.inputs] + [shape for _, shape in summary.outputs]
    assert sorted(tab.locator("text.edge-label").all_text_contents()) == sorted(shapes)

    # the block used twice is one box, "pre x 2", until it is expanded
    assert tab.locator("g.vertex[data-title=pre] text.title").text_content() == "pre \u00d7 2"
    assert tab.locator("g.vertex[data-title=pre]").get_attribute("data-state") == "adapters"
    tab.click("g.vertex[data-title=pre] .toggle")
    inner = ["pre.0.conv", "pre.0.act", "pre.0.residual", "pre.1.conv", "pre.1.act", "pre.1.residual"]
    assert titles(tab) == ["image", *inner, "resnet", "fc1", "relu", "fc2", "logits"]
    labels = tab.locator("text.edge-label").all_text_contents()
    # into each copy's conv and residual (2 x 2), within each copy (2 x 2), into resnet
    assert labels.count("(B, 3, 64, 64)") == 9

    # LoRA on each copy's conv: the block and those convs are coloured "with adapters"
    states = tab.locator("g.vertex").evaluate_all("els => els.map(e => [e.dataset.title, e.dataset.state])")
    assert [title for title, state in states if state == "adapters"] == ["pre.0.conv", "pre.1.conv"]
    tab.click("g.vertex[data-title='pre.1.conv']")
    facts = dict(
        tab.locator("#details table tr").evaluate_all(
            "rs => rs.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
        )
    )
    assert facts["adapters (LoRA)"] == "1: r=2, alpha=4, dropout=0, 1 layer: 1.conv"
    assert facts["MACs per sample"] == "331.78K"  # 3 x 3 channels x 3 x 3 kernel x 64 x 64
    plan = tab.locator("#plan-table table")
    header = plan.locator("th").all_text_contents()
    rows = plan.locator("tbody tr").evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    # the group holding pre's adapters (the parts that unfreeze later have groups of their own)
    assert [row[header.index("adapters")] for row in rows].count("pre: 2 layers (r=2, alpha=4)") == 1

    # a click shows the node's spec line and the code it became
    tab.click("g.vertex[data-title=fc1]")
    line = SPEC.splitlines().index("  fc1: {op: Linear, out_features: 256}") + 1
    spec_lines = tab.locator("#details pre.spec-lines")
    assert spec_lines.get_attribute("data-line") == str(line)
    assert spec_lines.text_content() == f"{line:4}    fc1: {{op: Linear, out_features: 256}}"
    assert "self.fc1 = nn.Linear(" in tab.locator("#details pre.code-lines").text_content()
    assert "#2 lr 0.001" in tab.locator("#details table").text_content()  # after the 2 unfreezing groups

    # the backbone expands into its stages, the one that unfreezes later coloured as such
    tab.click("g.vertex[data-title=resnet] .toggle")
    assert "resnet.layer4" in titles(tab)
    tab.click("g.vertex[data-title='resnet.layer4']")
    assert "unfreezes at epoch 2" in tab.locator("#details table").text_content()
    # 33,554,432: 256 -> 512 channels at 2 x 2, 3x3 convs 256x512 + 3 x 512x512, 1x1 256x512
    assert "MACs per sample33.55M" in tab.locator("#details table").text_content()

    # the search box marks the matches
    tab.fill("#search", "conv")
    assert tab.locator("#matches").text_content() == "3 matches"  # pre.0.conv, pre.1.conv, resnet.conv1

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "graph_html.png"), full_page=True)
    assert tab.refused == [] and tab.errors == []


def test_a_vit_h_14_page_is_small_and_fast(browser, tmp_path):
    spec = tmp_path / "vit.yaml"
    spec.write_text(
        "nncompile: 1\nname: ViTH\ninputs: {image: [3, 224, 224]}\nnodes:\n"
        "  vit: {op: torchvision.vit_h_14, head: remove}\n  fc: {op: Linear, out_features: 10}\n"
        "outputs: {logits: fc}\ntask: {kind: classification, optimizer: {name: AdamW, lr: 1.0e-4}}\n"
    )
    path = tmp_path / "vit.html"
    path.write_text(page(compile_spec(spec)))
    assert path.stat().st_size < 5 * 2**20
    tab = open_page(browser, path)
    assert int(tab.locator("body").get_attribute("data-rendered-ms")) < 2000
    tab.click("#expand-all")
    assert "vit.encoder" in titles(tab)
    assert tab.refused == [] and tab.errors == []
