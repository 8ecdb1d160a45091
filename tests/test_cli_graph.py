"""`nncompile graph`: Mermaid and DOT with shapes on the edges, SVG through Graphviz's `dot`."""

import os
import stat

from conftest import ROOT

TWO_TOWER = "specs/two_tower_concat.yaml"


def test_mermaid_has_every_node_and_a_shape_on_every_edge(run_cli):
    code, out, err = run_cli("graph", TWO_TOWER)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    in_image[/"image<br/>(B, 3, 32, 32)"/]' in lines
    assert '    n_joined["joined<br/>concat"]' in lines
    assert '    out_logits(["logits"])' in lines
    edges = [line for line in lines if "-->" in line]
    assert '    n_flat -->|"(B, 16)"| n_joined' in edges
    assert '    n_tab_act -->|"(B, 16)"| n_joined' in edges
    assert '    n_head -->|"(B, 5)"| out_logits' in edges
    assert len(edges) == 10  # 8 nodes with one input each but joined (two), and the output
    assert all('-->|"(B' in e for e in edges)


def test_mermaid_ids_never_clash_with_mermaid_keywords(run_cli, write_spec):
    spec = write_spec(
        "nncompile: 1\nname: Net\ninputs: {graph: [4]}\nnodes:\n  end: {op: Linear, out_features: 2}\n"
        "task: {kind: classification}\n"
    )
    code, out, _ = run_cli("graph", spec)
    assert code == 0
    assert '    in_graph -->|"(B, 4)"| n_end' in out.splitlines()


def test_dot_output(run_cli):
    code, out, _ = run_cli("graph", TWO_TOWER, "--format", "dot")
    assert code == 0
    assert out.startswith('digraph "ImageTabular" {\n')
    assert '    n_joined -> n_head [label="(B, 32)"];' in out
    assert '    n_conv [shape=box, label="conv\\nConv2d"];' in out
    assert out.rstrip().endswith("}")


def test_svg_without_graphviz_says_how_to_get_it(run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    code, out, err = run_cli("graph", TWO_TOWER, "--format", "svg")
    assert code == 1 and out == ""
    assert "error: `--format svg` needs Graphviz's `dot` program, which is not on PATH" in err
    assert "hint: install Graphviz" in err and "--format mermaid" in err
    assert "Traceback" not in err


def test_svg_and_png_through_dot(run_cli, monkeypatch, tmp_path):
    """A stand-in `dot` records its arguments and input, so the call itself is checked."""
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat > {tmp_path}/input\necho "<svg>rendered</svg>"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run_cli("graph", TWO_TOWER, "--format", "svg")
    assert code == 0, err
    assert out == "<svg>rendered</svg>\n"
    assert (tmp_path / "args").read_text().strip() == "-Tsvg"
    _, dot_text, _ = run_cli("graph", TWO_TOWER, "--format", "dot")
    assert (tmp_path / "input").read_text() == dot_text
    png = tmp_path / "graph.png"
    code, _, _ = run_cli("graph", TWO_TOWER, "--format", "png", "-o", png)
    assert code == 0 and (tmp_path / "args").read_text().strip() == "-Tpng"
    assert png.read_bytes() == b"<svg>rendered</svg>\n"


# the article's three examples (the seed1_* variants that extend the first are not among them)
SEEDS = ("seed1_resnet_head", "seed2_conv_before_vgg", "seed3_alexnet_features")


def test_docs_graphs_of_the_seed_examples_are_current(run_cli):
    """docs/graphs/<seed>.md holds `nncompile graph specs/<seed>.yaml` in a mermaid block."""
    seeds = [ROOT / "specs" / f"{name}.yaml" for name in SEEDS]
    for seed in seeds:
        _, mermaid, _ = run_cli("graph", seed.relative_to(ROOT))
        doc = (ROOT / "docs" / "graphs" / f"{seed.stem}.md").read_text()
        assert f"```mermaid\n{mermaid}```" in doc, f"refresh docs/graphs/{seed.stem}.md"
        assert f"```mermaid\n{mermaid}```" in (ROOT / "README.md").read_text(), "refresh the README graph"


def test_html_is_one_self_contained_page(run_cli, tmp_path):
    """`--html`: scripts, styles and data inline; nothing the page would fetch (the browser test,
    tests/test_graph_html.py, loads it with the network refused)."""
    import json
    import re

    out = tmp_path / "model.html"
    code, _, err = run_cli("graph", "specs/resnet_blocks.yaml", "--html", "-o", out)
    assert code == 0, err
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    assert "default-src 'none'" in text  # the page's policy refuses any request
    data = json.loads(
        re.search(r'<script id="model-data" type="application/json">(.*?)</script>', text, re.S)[1]
    )
    stages = {v["title"]: v for v in data["vertices"]}
    assert stages["stage2"]["children"]["copies"] == 2
    assert [e["label"] for e in data["edges"] if e["target"] == "n_stage2"] == ["(B, 32, H/2, W/2)"]
