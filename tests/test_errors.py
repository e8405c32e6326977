"""The catalogue of coded messages (transforms/errors.py): each code names one problem, every entry is
raised or logged somewhere, and the product code raises its errors through it."""

from __future__ import annotations

import ast
import re
import string

import pytest

from conftest import REPO
from hyperscene.pipelines.cli import main
from hyperscene.transforms.errors import Errors, InvalidOption, StoreBusy, Warnings

PRODUCT = ("pipelines", "transforms", "schemas")
CATALOGUE = REPO / "transforms" / "errors.py"
FAMILIES = {"1", "2", "3", "4", "5", "6", "7"}  # input, options, models and languages, stores, verification, sql, encode

def product_files() -> list[tuple[str, ast.Module]]:
    return [(path.relative_to(REPO).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
            for root in PRODUCT for path in sorted((REPO / root).rglob("*.py"))]


def catalogue_entries(catalogue: str) -> list[str]:
    """The codes assigned in the catalogue class's body, in order, repeats kept (a second assignment
    of a code would silently replace the first)."""
    [body] = [node.body for node in ast.parse(CATALOGUE.read_text(encoding="utf-8")).body
              if isinstance(node, ast.ClassDef) and node.name == catalogue]
    return [target.id for node in body if isinstance(node, ast.Assign) for target in node.targets]


def entries() -> dict[str, str]:
    return {code: getattr(catalogue, code) for catalogue in (Errors, Warnings) for code in catalogue_entries(catalogue.__name__)}


def error_classes(files) -> set[str]:
    """HypersceneError and its subclasses, wherever the product code defines them."""
    names = {"HypersceneError"}
    while True:
        more = {node.name for _, tree in files for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                and any(isinstance(b, ast.Name) and b.id in names for b in node.bases)}
        if more <= names:
            return names
        names |= more


def is_text(node: ast.AST) -> bool:
    """A string literal, an f-string, or text joined from them."""
    if isinstance(node, ast.BinOp):
        return is_text(node.left) or is_text(node.right)
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


@pytest.mark.parametrize("catalogue, letter", [("Errors", "E"), ("Warnings", "W")])
def test_codes_are_unique_and_well_formed(catalogue, letter):
    codes, messages = catalogue_entries(catalogue), entries()
    assert codes and len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    for code in codes:
        assert re.fullmatch(rf"{letter}\d{{3}}", code), code
        message = messages[code]
        assert message.startswith(f"[{code}] ") and not re.match(r"\[[EW]\d{3}\] \[", message), message
        fields = [field for _, field, _, _ in string.Formatter().parse(message) if field is not None]
        assert all(field.isidentifier() for field in fields), (code, fields)  # named, so a call site says what goes where
    if letter == "E":
        assert {code[1] for code in codes} <= FAMILIES


def test_codes_quoted_in_messages_exist():
    messages = entries()
    for code, message in messages.items():
        for quoted in re.findall(r"\[([EW]\d{3})\]", message.split("] ", 1)[1]):
            assert quoted in messages, (code, quoted)


def test_every_entry_is_used():
    used = {node.attr for _, tree in product_files() for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("Errors", "Warnings")}
    codes = set(entries())
    assert used <= codes, sorted(used - codes)
    assert not codes - used, f"dead entries: {sorted(codes - used)}"


def test_errors_are_raised_through_the_catalogue():
    files = product_files()
    classes = error_classes(files)
    bare = []
    for name, tree in files:
        for node in ast.walk(tree):
            # every construction, not only in raise: a helper may build the error that its caller raises
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes:
                if any(is_text(arg) for arg in [*node.args[:1], *(k.value for k in node.keywords if k.arg == "message")]):
                    bare.append(f"{name}:{node.lineno}: {node.func.id}")
            # a code written into a message by hand, as before the catalogue
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"\[[EW]\d{3}\]", node.value):
                bare.append(f"{name}:{node.lineno}: {node.value[:40]!r}")
    assert not bare, "messages that do not come from Errors or Warnings:\n" + "\n".join(bare)


def test_an_error_takes_its_code_from_its_message():
    error = InvalidOption(Errors.E216.format(most=10, value=11))
    assert error.code == "E216" and str(error) == "[E216] --seed must be a whole number from 0 to 10, not 11"
    with pytest.raises(TypeError, match="comes from Errors"):
        InvalidOption("a message from outside the catalogue")
    assert str(StoreBusy(Errors.E431.format(lock="l"))).startswith("[E431] could not take the lock l: ")


def test_the_cli_prints_the_code_of_the_problem(tmp_path, capsys):
    assert main(["log", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err == f"hyperscene log: error: [E402] {str(tmp_path / 'nothing')!r} holds no store versions: compress into it first\n"
