"""The `where` filter language: operators, precedence, semantics, the mapping form, errors and limits."""

from __future__ import annotations

import pickle
from datetime import date
from pathlib import Path

import pytest

from server.content import where as where_module
from server.content.where import MAX_DEPTH, MAX_LENGTH, MAX_LIST, Ref, Where, WhereError, compile_where


def matches(source: str | dict, properties: dict) -> bool:
    return compile_where(source).matches(properties)


def error(source: str | dict) -> WhereError:
    with pytest.raises(WhereError) as caught:
        compile_where(source)
    return caught.value


# --- comparisons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, amount, expected",
    [
        ("amount == 20", 20, True),
        ("amount == 20", 21, False),
        ("amount == 20", 20.0, True),
        ("amount == 20.5", 20.5, True),
        ("amount != 20", 21, True),
        ("amount != 20", 20, False),
        ("amount < 20", 19.99, True),
        ("amount < 20", 20, False),
        ("amount <= 20", 20, True),
        ("amount <= 20", 20.01, False),
        ("amount > 20", 21, True),
        ("amount > 20", 20, False),
        ("amount >= 20", 20, True),
        ("amount >= 20", 19, False),
        ("amount > -5", -4, True),
        ("amount < -0.5", -1, True),
        ("amount == 0", -0.0, True),
    ],
)
def test_numbers_compare_with_every_operator(source, amount, expected):
    assert matches(source, {"amount": amount}) is expected


@pytest.mark.parametrize(
    "source, channel, expected",
    [
        ("channel == 'online'", "online", True),
        ("channel == 'online'", "Online", False),
        ("channel != 'online'", "store", True),
        ("channel != 'online'", "online", False),
        ("channel < 'm'", "app", True),
        ("channel < 'm'", "store", False),
        ("channel <= 'app'", "app", True),
        ("channel > 'm'", "store", True),
        ("channel >= 'store'", "store", True),
        ("channel >= 'store'", "online", False),
        ('channel == "online"', "online", True),
        ("channel == ''", "", True),
    ],
)
def test_strings_compare_with_every_operator(source, channel, expected):
    assert matches(source, {"channel": channel}) is expected


@pytest.mark.parametrize(
    "source, gift, expected",
    [
        ("gift == true", True, True),
        ("gift == true", False, False),
        ("gift == false", False, True),
        ("gift != true", False, True),
        ("gift != true", True, False),
        ("gift != false", True, True),
    ],
)
def test_booleans_compare_with_equality(source, gift, expected):
    assert matches(source, {"gift": gift}) is expected


def test_strings_keep_escapes_keywords_and_spaces():
    assert matches(r"note == 'it\'s'", {"note": "it's"})
    assert matches(r'note == "say \"hi\""', {"note": 'say "hi"'})
    assert matches(r"note == 'a\\b'", {"note": "a\\b"})
    assert matches("note == 'x and y or not z'", {"note": "x and y or not z"})
    assert matches("note == 'two\nlines'", {"note": "two\nlines"})
    assert matches('note == "it\'s"', {"note": "it's"})


def test_whitespace_is_free_between_tokens():
    assert matches("amount>=20 and(channel=='online')or(x==1)", {"amount": 20, "channel": "online"})
    assert matches("  amount\n>=\t20  ", {"amount": 21})


# --- in / not in ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, value, expected",
    [
        ("x in ['shoes', 'bags']", "bags", True),
        ("x in ['shoes', 'bags']", "hats", False),
        ("x not in ['shoes', 'bags']", "hats", True),
        ("x not in ['shoes', 'bags']", "shoes", False),
        ("x in ['shoes',]", "shoes", True),
        ("x in [1, 2.5]", 2.5, True),
        ("x in [1, 2.5]", 1.0, True),
        ("x in [1.0]", 1, True),
        ("x in [1, 2]", 3, False),
        ("x not in [1, 2]", 3, True),
        ("x in [true]", True, True),
        ("x in [true]", False, False),
        ("x not in [false]", True, True),
        ("x in ['1', 1, true]", "1", True),
        ("x in ['1', 1, true]", 1, True),
        ("x in ['1', 1, true]", True, True),
        ("x in ['1', 2, false]", True, False),
    ],
)
def test_in_and_not_in(source, value, expected):
    assert matches(source, {"x": value}) is expected


def test_membership_uses_the_same_equality_as_double_equals():
    assert matches("n in [1]", {"n": True}) is False
    assert matches("n in [true]", {"n": 1}) is False
    assert matches("n in [0]", {"n": False}) is False
    assert matches("n not in [1]", {"n": True}) is True
    assert matches("n in ['1']", {"n": 1}) is False
    assert matches("n not in ['1']", {"n": 1}) is True
    assert matches("n in [1]", {"n": [1]}) is False
    assert matches("n not in [1]", {"n": [1]}) is True


# --- and / or / not -------------------------------------------------------------------------------


def test_and_binds_tighter_than_or():
    source = "a == 1 or b == 1 and c == 1"  # a == 1 or (b == 1 and c == 1)
    assert matches(source, {"a": 1, "b": 0, "c": 0})
    assert matches(source, {"a": 0, "b": 1, "c": 1})
    assert not matches(source, {"a": 0, "b": 1, "c": 0})


def test_parentheses_group():
    source = "(a == 1 or b == 1) and c == 1"
    assert not matches(source, {"a": 1, "b": 0, "c": 0})
    assert matches(source, {"a": 1, "b": 0, "c": 1})
    assert matches("((((a == 1))))", {"a": 1})


def test_not_binds_tighter_than_and():
    source = "not a == 1 and b == 1"  # (not a == 1) and b == 1
    assert matches(source, {"a": 0, "b": 1})
    assert not matches(source, {"a": 1, "b": 1})
    assert not matches(source, {"a": 0, "b": 0})
    assert matches("not (a == 1 and b == 1)", {"a": 1, "b": 0})
    assert matches("not not a == 1", {"a": 1})
    assert not matches("not not not a == 1", {"a": 1})


def test_long_chains_of_and_and_or():
    any_of = " or ".join(f"n == {i}" for i in range(10))
    all_of = " and ".join(f"n != {i}" for i in range(10))
    assert matches(any_of, {"n": 7})
    assert not matches(any_of, {"n": 12})
    assert matches(all_of, {"n": 12})
    assert not matches(all_of, {"n": 3})
    assert matches("a == 1 and b == 2 and c == 3", {"a": 1, "b": 2, "c": 3})
    assert not matches("a == 1 or b == 2 or c == 3", {"a": 0, "b": 0, "c": 0})


# --- dotted, missing and mismatched properties -----------------------------------------------------


def test_dotted_names_look_into_nested_dicts():
    props = {"address": {"city": "Oslo", "geo": {"zone": 3}}}
    assert matches("address.city == 'Oslo'", props)
    assert matches("address.geo.zone >= 3", props)
    assert matches("address.city in ['Oslo', 'Bergen']", props)
    assert not matches("address.city == 'Bergen'", props)
    # a flat key with a dot in it is not a nested lookup
    assert not matches("address.city == 'Oslo'", {"address.city": "Oslo"})


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"address": None},
        {"address": "Oslo"},
        {"address": ["city"]},
        {"address": {}},
        {"address": {"city": None}},
        {"address": {"town": "Oslo"}},
    ],
)
def test_a_missing_nested_property_fails_every_comparison(props):
    for source in (
        "address.city == 'Oslo'",
        "address.city != 'Oslo'",
        "address.city < 'Z'",
        "address.city in ['Oslo']",
        "address.city not in ['Oslo']",
    ):
        assert matches(source, props) is False, source
    assert matches("not address.city == 'Oslo'", props) is True


@pytest.mark.parametrize(
    "source",
    [
        "amount == 1",
        "amount != 1",
        "amount < 1",
        "amount <= 1",
        "amount > 1",
        "amount >= 1",
        "amount == 'x'",
        "amount != 'x'",
        "amount == true",
        "amount != true",
        "amount in [1, 'x', true]",
        "amount not in [1, 'x', true]",
    ],
)
@pytest.mark.parametrize("props", [{}, {"amount": None}, {"other": 1}])
def test_a_missing_or_null_property_fails_every_comparison(source, props):
    assert matches(source, props) is False
    assert matches(f"not ({source})", props) is True


@pytest.mark.parametrize(
    "value, literal",
    [
        ("20", "20"),
        (20, "'20'"),
        (True, "1"),
        (False, "0"),
        (1, "true"),
        ("true", "true"),
        ([20], "20"),
        ({"n": 20}, "20"),
    ],
)
def test_different_types_are_unequal_and_unordered(value, literal):
    props = {"x": value}
    assert matches(f"x == {literal}", props) is False
    assert matches(f"x != {literal}", props) is True
    if literal not in ("true", "false"):
        for op in ("<", "<=", ">", ">="):
            assert matches(f"x {op} {literal}", props) is False, op
    assert matches(f"x in [{literal}]", props) is False
    assert matches(f"x not in [{literal}]", props) is True


def test_subclasses_of_the_literal_types_compare_like_them():
    class Text(str):
        pass

    class Amount(float):
        pass

    assert matches("channel == 'online'", {"channel": Text("online")})
    assert matches("channel in ['online']", {"channel": Text("online")})
    assert matches("amount > 2", {"amount": Amount(2.5)})
    assert matches("amount in [2.5]", {"amount": Amount(2.5)})
    assert matches("amount != 'x'", {"amount": Amount(2.5)})


# --- the whole object ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", [None, "", "   ", "\n\t"])
def test_nothing_matches_everything(source):
    where = compile_where(source)
    assert isinstance(where, Where)
    assert where.refs == ()
    assert where.source == (source or "")
    assert where.matches({})
    assert where.matches({"anything": 1})


def test_a_filter_is_reusable_and_keeps_its_source():
    source = "channel == 'online' and amount >= 20"
    where = compile_where(source)
    assert where.source == source
    assert repr(where) == f"Where({source!r})"
    results = [where.matches({"channel": "online", "amount": n}) for n in (10, 20, 30, 5)]
    assert results == [False, True, True, False]


def test_refs_list_each_comparison_in_order():
    where = compile_where(
        "channel == 'online' and (amount >= 20 or not gift != true) "
        "and address.city in ['Oslo', \"Bergen\"] and size not in [1, 2.5] and amount >= 20"
    )
    assert where.refs == (
        Ref("channel", "==", ("online",)),
        Ref("amount", ">=", (20,)),
        Ref("gift", "!=", (True,)),
        Ref("address.city", "in", ("Oslo", "Bergen")),
        Ref("size", "not in", (1, 2.5)),
    )  # the repeated `amount >= 20` is listed once


def test_refs_keep_literal_types():
    (ref,) = compile_where("n in [1, 1.5, -2, 'x', false]").refs
    assert [type(v) for v in ref.values] == [int, float, int, str, bool]
    assert ref.values == (1, 1.5, -2, "x", False)
    with pytest.raises(AttributeError):
        ref.op = "=="  # type: ignore[misc]


# --- the mapping form ----------------------------------------------------------------------------


def test_the_mapping_form_means_equals_and_in():
    where = compile_where({"channel": "online", "category": ["shoes", "bags"]})
    assert where.source == "channel == 'online' and category in ['shoes', 'bags']"
    assert where.refs == (Ref("channel", "==", ("online",)), Ref("category", "in", ("shoes", "bags")))
    assert where.matches({"channel": "online", "category": "bags"})
    assert not where.matches({"channel": "online", "category": "hats"})
    assert not where.matches({"channel": "store", "category": "bags"})


def test_the_mapping_form_writes_every_scalar_back_as_text():
    mapping = {
        "gift": True,
        "n": 3,
        "big": 1e20,
        "tiny": -1.5e-7,
        "half": 0.5,
        "note": "it's a \\ path",
        "address.city": ["Oslo", 2, False],
    }
    where = compile_where(mapping)
    assert where.source == (
        "gift == true and n == 3 and big == 100000000000000000000.0 and tiny == -0.00000015 "
        "and half == 0.5 and note == 'it\\'s a \\\\ path' and address.city in ['Oslo', 2, false]"
    )
    assert [ref.values for ref in where.refs] == [
        (True,),
        (3,),
        (1e20,),
        (-1.5e-7,),
        (0.5,),
        ("it's a \\ path",),
        ("Oslo", 2, False),
    ]
    assert compile_where(where.source).refs == where.refs
    event = {"gift": True, "n": 3.0, "big": 1e20, "tiny": -1.5e-7, "half": 0.5, "note": "it's a \\ path"}
    assert where.matches({**event, "address": {"city": 2}})
    assert not where.matches({**event, "address": {"city": True}})


def test_an_empty_mapping_matches_everything():
    where = compile_where({})
    assert where.source == ""
    assert where.refs == ()
    assert where.matches({"x": 1})


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"address": {"city": "Oslo"}}, "for 'address', found a mapping; name a nested property with a dot"),
        ({"coupon": None}, "expected text, a number, true or false as the value for 'coupon', found nothing"),
        ({"category": []}, "expected at least one value for 'category', found an empty list"),
        ({"category": ["shoes", None]}, "in the list for 'category', found nothing"),
        ({"category": ["shoes", ["bags"]]}, "in the list for 'category', found a list"),
        ({"category": [{"a": 1}]}, "for 'category', found a mapping"),
        ({"amount": float("inf")}, "expected a finite number for 'amount', found inf"),
        ({"amount": float("nan")}, "expected a finite number for 'amount', found nan"),
        ({"day": date(2026, 1, 1)}, "as the value for 'day', found datetime.date(2026, 1, 1)"),
        ({"bad name": 1}, "expected a property name, found 'bad name'"),
        ({"a.": 1}, "expected a property name, found 'a.'"),
        ({"1st": 1}, "expected a property name, found '1st'"),
        ({"and": 1}, "expected a property name, found 'and', a keyword"),
        ({True: 1}, "expected a property name, found True; put the name in quotes"),
        (
            {"n": list(range(MAX_LIST + 1))},
            f"expected at most {MAX_LIST} values for 'n', found {MAX_LIST + 1}",
        ),
        ({"note": "x" * MAX_LENGTH}, "expected at most 1,000 characters when written out"),
    ],
)
def test_mapping_errors_name_the_key_at_column_zero(mapping, message):
    exc = error(mapping)
    assert message in exc.message
    assert exc.column == 0
    assert str(exc) == exc.message


def test_the_mapping_form_takes_the_list_limit_exactly():
    where = compile_where({"n": list(range(MAX_LIST))})
    assert len(where.refs[0].values) == MAX_LIST


def test_other_sources_are_rejected():
    exc = error(42)  # type: ignore[arg-type]
    assert (exc.message, exc.column) == ("expected a filter as text or a mapping, found int", 0)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, column, message",
    [
        # the example from the brief
        ("amount >= ", 11, "expected a value after '>=', found end of text"),
        # '=' and other operators from other languages
        ("amount = 20", 8, "'=' is not an operator; use '==' to compare"),
        ("amount => 20", 8, "'=' is not an operator; use '==' to compare"),
        ("a !b", 3, "'!' is not an operator; use '!=' to compare, or 'not' to negate"),
        ("a == 1 && b == 2", 8, "'&&' is not an operator; use 'and'"),
        ("a == 1 || b == 2", 8, "'||' is not an operator; use 'or'"),
        ("a == $", 6, "unexpected character '$'"),
        # conditions
        (
            "== 1",
            1,
            "expected a condition, found '=='; a condition starts with a property name, 'not' or '('",
        ),
        ("'a' == 1", 1, "expected a condition, found 'a'; a condition starts with"),
        ("a == 1 and", 11, "expected a condition after 'and', found end of text"),
        ("a == 1 or or b == 1", 11, "expected a condition after 'or', found 'or'; 'or' is a keyword"),
        ("not", 4, "expected a condition after 'not', found end of text"),
        ("()", 2, "expected a condition after '(', found ')'"),
        ("in == 1", 1, "expected a condition, found 'in'; 'in' is a keyword and cannot be a property name"),
        ("true == x", 1, "'true' is a keyword and cannot be a property name"),
        # comparisons
        ("amount", 7, "expected a comparison after 'amount', found end of text; compare with '==', '!='"),
        ("amount 20", 8, "expected a comparison after 'amount', found '20'"),
        ("a IN [1]", 3, "expected a comparison after 'a', found 'IN'; keywords are lower case: write 'in'"),
        ("a not == 1", 7, "expected 'in' after 'not', found '=='; write 'not in' to exclude values"),
        ("a < true", 3, "expected '==' or '!=' before true, found '<'; true and false have no order"),
        ("a >= false", 3, "expected '==' or '!=' before false, found '>='"),
        # values
        (
            "channel == online",
            12,
            "expected a value after '==', found 'online'; put text in quotes: 'online'",
        ),
        ("gift == True", 9, "expected a value after '==', found 'True'; write booleans in lower case: true"),
        ("a == [1]", 6, "expected a value after '==', found '['; compare with a list using 'in'"),
        ("a == (1)", 6, "expected a value after '==', found '('; a value is a quoted string, a number"),
        # lists
        ("a in 1", 6, "expected a list after 'in', found '1'; write the values in brackets: ['a', 'b']"),
        ("a not in 'x'", 10, "expected a list after 'in', found 'x'"),
        ("a in []", 7, "expected a value after '[', found ']'; a list needs at least one value"),
        ("a in [1 2]", 9, "expected ',' or ']' after '1', found '2'"),
        ("a in [1,,2]", 9, "expected a value after ',', found ','"),
        ("a in [1", 8, "expected ',' or ']' after '1', found end of text"),
        ("a in [x]", 7, "expected a value after '[', found 'x'; put text in quotes: 'x'"),
        # names
        ("a. == 1", 3, "expected a property name after 'a.', found ' '"),
        ("a.1 == 1", 3, "expected a property name after 'a.', found '1'"),
        ("a.b.", 5, "expected a property name after 'a.b.', found end of text"),
        # numbers
        ("a == -x", 7, "expected a digit after '-', found 'x'"),
        ("a == -", 7, "expected a digit after '-', found end of text"),
        ("a == 1.", 8, "expected a digit after '1.', found end of text"),
        ("a == .5", 6, "unexpected character '.'"),
        ("a == 10abc", 8, "expected a space or an operator after the number 10, found 'a'"),
        ("a == 1.5.2", 9, "expected a space or an operator after the number 1.5, found '.'"),
        ("a == " + "9" * 400 + ".0", 6, "is too large"),
        # strings
        ("a == 'abc", 6, "expected a closing ' for the string that starts here, found end of text"),
        ('a == "abc\\"', 6, 'expected a closing " for the string that starts here'),
        ("a == 'a\\nb'", 8, "expected \\\\, \\' or \\\" (the only escapes) in a string, found '\\n'"),
        # parentheses and what follows a complete expression
        (
            "(a == 1",
            8,
            "expected 'and', 'or' or ')' after '1', found end of text; the '(' at column 1 is not closed",
        ),
        ("(a == 1 b == 2)", 9, "expected 'and', 'or' or ')' after '1', found 'b'"),
        ("a == 1)", 7, "expected 'and', 'or' or end of text after '1', found ')'"),
        ("a == 1 b == 2", 8, "expected 'and', 'or' or end of text after '1', found 'b'"),
        ("a == 1 AND b == 2", 8, "found 'AND'; keywords are lower case: write 'and'"),
        ("a == 'x' 'y'", 10, "expected 'and', 'or' or end of text after 'x', found 'y'"),
    ],
)
def test_errors_say_what_was_expected_and_found_and_where(source, column, message):
    exc = error(source)
    assert message in exc.message, exc.message
    assert exc.column == column, exc.message


def test_the_first_problem_in_reading_order_is_reported():
    # the stray '=' further on is not reached: the missing value comes first
    exc = error("a == and b = 1")
    assert exc.column == 6
    assert exc.message.startswith("expected a value after '==', found 'and'")


def test_where_error_is_a_value_error_with_the_column_in_its_text():
    exc = error("amount >= ")
    assert isinstance(exc, ValueError)
    assert str(exc) == "expected a value after '>=', found end of text (column 11)"
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.message, copy.column) == (exc.message, exc.column)


def test_long_text_in_messages_is_shortened():
    exc = error("a == " + "x" * 100)
    assert f"found '{'x' * 37}...'" in exc.message


# --- limits --------------------------------------------------------------------------------------


def test_the_source_is_at_most_1000_characters():
    padding = " " * (MAX_LENGTH - len("a == 1"))
    assert compile_where("a == 1" + padding).matches({"a": 1})
    exc = error("a == 1" + padding + " ")
    assert exc.message == "expected at most 1,000 characters, found 1,001; shorten the filter"
    assert exc.column == MAX_LENGTH + 1


def test_nesting_is_at_most_20_levels_of_parentheses_and_not():
    assert matches("(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH, {"a": 1})
    assert matches("not " * MAX_DEPTH + "a == 1", {"a": 1})
    assert matches("not (" * (MAX_DEPTH // 2) + "a == 1" + ")" * (MAX_DEPTH // 2), {"a": 1}) is True

    exc = error("(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1))
    assert exc.message == "expected at most 20 levels of '(' and 'not', found more; simplify the filter"
    assert exc.column == MAX_DEPTH + 1
    exc = error("not " * (MAX_DEPTH + 1) + "a == 1")
    assert exc.column == MAX_DEPTH * 4 + 1
    assert "20 levels" in error("not (" * 11 + "a == 1" + ")" * 11).message


def test_a_list_holds_at_most_200_values():
    values = ", ".join(str(i) for i in range(MAX_LIST))
    assert matches(f"n in [{values},]", {"n": MAX_LIST - 1})
    exc = error(f"n in [{values}, 200]")
    assert exc.message == "expected at most 200 values in a list, found more"
    assert exc.column == len(f"n in [{values}, ") + 1


def test_a_long_filter_of_many_comparisons_compiles():
    source = " or ".join(f"n == {i}" for i in range(130))[:MAX_LENGTH].rsplit(" or ", 1)[0]
    where = compile_where(source)
    assert where.matches({"n": 5})
    assert len(where.refs) == source.count(" or ") + 1 > 80


# --- safety --------------------------------------------------------------------------------------


def test_the_language_is_not_evaluated_as_python():
    text = Path(where_module.__file__).read_text()
    assert "import ast" not in text
    assert "eval(" not in text
    assert "exec(" not in text
    for source in ("__import__('os').system('true') == 1", "a == 1 if 1 else 2", "a == 1; b == 2"):
        with pytest.raises(WhereError):
            compile_where(source)
    assert not matches("a.__class__ == 'dict'", {"a": {}})
