"""A1111 emphasis syntax: the examples from A1111's documentation, plus edge cases."""

from __future__ import annotations

import pytest

from desktop_app.pipeline.prompt_parser import Segment, parse_prompt


def pairs(prompt: str) -> list[tuple[str, float]]:
    return [(s.text, s.weight) for s in parse_prompt(prompt)]


def assert_pairs(prompt: str, expected: list[tuple[str, float]]) -> None:
    got = pairs(prompt)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        (r"\(literal\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
             ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641), (".", 1.1)],
        ),
    ],
)
def test_a1111_documented_examples(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert_pairs(prompt, expected)


def test_double_round_brackets_weigh_1_21() -> None:
    assert_pairs("((x))", [("x", 1.21)])


def test_explicit_weight_replaces_the_default_factor() -> None:
    assert_pairs("a (cat:1.3) b", [("a ", 1.0), ("cat", 1.3), (" b", 1.0)])


def test_square_brackets_divide_and_nest() -> None:
    assert_pairs("[x] [[y]]", [("x", 1 / 1.1), (" ", 1.0), ("y", 1 / 1.21)])


def test_nested_weights_multiply() -> None:
    assert_pairs("((a:2) b)", [("a", 2.2), (" b", 1.1)])


def test_unbalanced_square_bracket_applies_to_the_rest() -> None:
    assert_pairs("a [b c", [("a ", 1.0), ("b c", 1 / 1.1)])


def test_stray_closing_brackets_are_text() -> None:
    assert_pairs("a) b]", [("a) b]", 1.0)])


def test_weight_without_open_bracket_is_text() -> None:
    assert_pairs("x :1.2) y", [("x :1.2) y", 1.0)])


def test_non_numeric_weight_is_text_inside_the_bracket() -> None:
    assert_pairs("(a:b)", [("a:b", 1.1)])


def test_escaped_brackets_and_backslash_are_literal() -> None:
    assert_pairs(r"\(a\) \[b\] c\\d", [(r"(a) [b] c\d", 1.0)])


def test_break_starts_a_new_chunk() -> None:
    assert parse_prompt("a BREAK b") == [
        Segment("a"), Segment("BREAK", 1.0, is_break=True), Segment("b")
    ]


def test_break_inside_brackets_keeps_the_weights_around_it() -> None:
    assert pairs("(a BREAK b)") == [("a", pytest.approx(1.1)), ("BREAK", 1.0),
                                    ("b", pytest.approx(1.1))]


def test_break_must_be_a_whole_upper_case_word() -> None:
    assert pairs("aBREAKb break") == [("aBREAKb break", 1.0)]


def test_empty_prompt_is_one_empty_segment() -> None:
    assert parse_prompt("") == [Segment("", 1.0)]


def test_negative_and_fractional_weights_parse() -> None:
    assert_pairs("(a:-0.5)(b:.5)(c: 2 )", [("a", -0.5), ("b", 0.5), ("c", 2.0)])
