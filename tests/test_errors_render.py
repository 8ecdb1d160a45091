"""The rendering of diagnostics and the did-you-mean suggestions, unit by unit."""

from nncompile.errors import (
    Collector,
    Diagnostic,
    Loc,
    NncompileError,
    SpecError,
    did_you_mean,
    did_you_mean_op,
)


def test_render_reads_the_spec_line_and_puts_the_caret_under_the_column(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("nodes:\n  fc: {op: Linaer}\n")
    d = Diagnostic("unknown op 'Linaer'", Loc(str(spec), 2, 12), node="fc", hint="did you mean 'Linear'?")
    assert d.render().splitlines() == [
        f"{spec}:2:12: error: node 'fc': unknown op 'Linaer'",
        "      fc: {op: Linaer}",
        "               ^",
        "hint: did you mean 'Linear'?",
    ]


def test_render_without_a_readable_file_still_locates(tmp_path):
    d = Diagnostic("boom", Loc(str(tmp_path / "gone.yaml"), 3, 1))
    assert d.render() == f"{tmp_path / 'gone.yaml'}:3:1: error: boom"


def test_several_errors_are_sorted_by_line_and_counted():
    err = NncompileError(
        [
            Diagnostic("second", Loc("s.yaml", 9, 1), hint="h"),
            Diagnostic("first", Loc("s.yaml", 2, 5), hint="h"),
        ]
    )
    lines = err.render([]).splitlines()
    assert lines == [
        "s.yaml:2:5: error: first",
        "hint: h",
        "s.yaml:9:1: error: second",
        "hint: h",
        "2 errors",
    ]


def test_collector_stops_at_its_limit_and_says_so():
    collector = Collector(limit=3)
    raised = None
    for i in range(5):
        try:
            collector.add(SpecError(f"e{i}", Loc("s.yaml", i + 1, 1)))
        except NncompileError as err:
            raised = err
            break
    assert raised is not None and raised.truncated and len(raised.diagnostics) == 3
    assert (
        raised.render([]).splitlines()[-1] == "stopped after 3 errors; fix these and run again for the rest"
    )


def test_did_you_mean_ignores_case_and_matches_the_last_dotted_part():
    assert did_you_mean("relu", ["ReLU", "Linear"]) == "did you mean 'ReLU'?"
    assert (
        did_you_mean("resnet18", ["torchvision.resnet18", "Linear"]) == "did you mean 'torchvision.resnet18'?"
    )
    assert did_you_mean("zzz", ["ReLU"]) is None


def test_op_suggestions_reach_torchvision_models():
    assert "'torchvision.efficientnet_b0'" in did_you_mean_op("efficientnet_b0", ["Linear"])
    assert did_you_mean_op("nn.Linaer", ["Linear", "ReLU"]).startswith("did you mean 'Linear'")
