"""The rendering of diagnostics and the did-you-mean suggestions, unit by unit."""

from nncompile.errors import (
    Collector,
    Diagnostic,
    Loc,
    NncompileError,
    SpecError,
    did_you_mean,
    did_you_mean_op,
    printable,
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


def test_printable_escapes_what_a_terminal_would_act_on():
    assert printable("a\x1b[2J\x07\r\nb\u2028c\u200b\0") == "a\\x1b[2J\\x07\\r\\nb\\u2028c\\u200b\\x00"
    assert printable("fc1 é 中 (B, 512)") == "fc1 é 中 (B, 512)"  # printable text is left alone
    assert printable("a\tb", "?") == "a?b"


def test_render_escapes_every_spec_text_but_keeps_the_caret_column(tmp_path):
    """Message, hint, node and file name are escaped; the quoted spec line has one `?` per
    control character, so the caret still points at the column."""
    spec = tmp_path / "s\x1b]0;t\x07.yaml"
    spec.write_text('nodes:\n  fc: {"\x1b": 1, op: Linaer}\n')
    d = Diagnostic(
        "unknown key '\x1b[2J'\nFAKE-LINE: compiled OK",
        Loc(str(spec), 2, 16),
        node="f\nc",
        hint="did you mean '\x07op'?",
    )
    lines = d.render().split("\n")
    assert lines == [
        f"{printable(spec)}:2:16: error: node 'f\\nc': unknown key '\\x1b[2J'\\nFAKE-LINE: compiled OK",
        '      fc: {"?": 1, op: Linaer}',
        "                   ^",
        "hint: did you mean '\\x07op'?",
    ]
    assert "\\x1b]0;t\\x07.yaml" in lines[0]


def test_did_you_mean_shows_the_code_points_of_lookalike_characters():
    """`fс1` with a Cyrillic es prints like `fc1`: the hint names the characters that differ."""
    assert did_you_mean("f\u0441" + "1", ["fc1", "relu"]) == (
        "did you mean 'fc1'? ('f\u04411' has U+0441 CYRILLIC SMALL LETTER ES where 'fc1' has"
        " U+0063 LATIN SMALL LETTER C)"
    )
    assert did_you_mean("f\u200bc1", ["fc1"]).endswith(
        "('f\\u200bc1' has U+200B ZERO WIDTH SPACE where 'fc1' has nothing)"
    )
    assert did_you_mean("fc3", ["fc1", "relu"]) == "did you mean 'fc1'?"  # a plain typo: no code points


def test_a_lookalike_reference_is_explained_on_the_command_line(write_spec, run_cli):
    spec = write_spec(
        "nncompile: 1\nname: Net\ninputs: {x: [8]}\nnodes:\n  fc1: {op: Linear, out_features: 4}\n"
        "  head: {op: Linear, out_features: 2, in: f\u04411}\ntask: {kind: classification}\n"
    )
    code, _, err = run_cli(spec, "-o", spec.with_suffix(".py"))
    assert code == 2
    assert f"{spec}:6:" in err and "unknown input 'f\u04411'" in err
    assert "U+0441 CYRILLIC SMALL LETTER ES where 'fc1' has U+0063 LATIN SMALL LETTER C" in err
