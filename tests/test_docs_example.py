"""docs/generated-example.md shows generated/seed1_resnet_head.py in full: the two agree."""

from conftest import ROOT


def test_the_documented_example_is_the_generated_file():
    doc = (ROOT / "docs" / "generated-example.md").read_text()
    source = (ROOT / "generated" / "seed1_resnet_head.py").read_text()
    assert f"```python\n{source}```\n" in doc
