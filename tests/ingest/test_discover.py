"""discover(): folders, files, globs and missing inputs; covers() for removal decisions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth.ingest import discover


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    files = [
        "docs/intro.md",
        "docs/guide/setup.md",
        "docs/guide/deep/notes.txt",
        "docs/image.png",
        "docs/.hidden/secret.md",
        "docs/.draft.md",
        "docs/node_modules/pkg/readme.md",
        "docs/__pycache__/x.txt",
        "reports/2023.json",
        "reports/2024.json",
        "reports/old/2019.json",
        "reports/summary.csv",
        "single.txt",
    ]
    for name in files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_folder_recurses_sorted_skipping_hidden_and_tool_folders(tree):
    found = discover(["docs"])
    assert rel(found.files, tree) == ["docs/guide/deep/notes.txt", "docs/guide/setup.md",
                                      "docs/intro.md"]  # fmt: skip
    assert rel(found.ignored, tree) == ["docs/image.png"]
    assert found.missing == []
    assert all(p.is_absolute() for p in found.files)


def test_folder_walk_can_keep_every_file(tree):
    found = discover(["docs"], supported_only=False)
    assert "docs/image.png" in rel(found.files, tree)


def test_explicit_file_is_kept_even_if_unsupported(tree):
    found = discover(["docs/image.png", "single.txt"])
    assert rel(found.files, tree) == ["docs/image.png", "single.txt"]


def test_globs_with_star_and_double_star(tree):
    assert rel(discover(["reports/*.json"]).files, tree) == ["reports/2023.json",
                                                             "reports/2024.json"]  # fmt: skip
    assert rel(discover(["reports/**/*.json"]).files, tree) == [
        "reports/2023.json", "reports/2024.json",
        "reports/old/2019.json",
    ]  # fmt: skip
    assert rel(discover(["**/setup.md"]).files, tree) == ["docs/guide/setup.md"]
    assert rel(discover([str(tree / "reports" / "202?.json")]).files, tree) == [
        "reports/2023.json", "reports/2024.json"
    ]  # fmt: skip


def test_duplicates_collapse_and_missing_inputs_are_reported(tree):
    found = discover(["docs/intro.md", "docs", "./docs/intro.md", "nowhere.md", "nothing/*.md"])
    assert rel(found.files, tree).count("docs/intro.md") == 1
    assert found.missing == ["nowhere.md", "nothing/*.md"]


def test_covers_folders_files_and_globs(tree):
    found = discover(["docs", "single.txt", "reports/*.json"])
    covers = found.covers
    assert covers(str(tree / "docs/guide/removed-later.md"))
    assert covers(str(tree / "single.txt"))
    assert covers(str(tree / "reports/2030.json"))  # matches the glob even if new
    assert not covers(str(tree / "reports/summary.csv"))
    assert not covers(str(tree / "reports/old/2019.json"))  # * does not cross folders
    assert not covers(str(tree / "other.txt"))
    assert not covers(str(tree / "docs-old/x.md"))  # a sibling with a common prefix
    assert not covers("relative/path.md")


def test_covers_a_missing_input_so_its_documents_can_be_removed(tree):
    found = discover(["gone-folder", "gone.txt"])
    assert found.files == []
    assert found.covers(str(tree / "gone-folder/a.md"))
    assert found.covers(str(tree / "gone.txt"))
    assert not found.covers(str(tree / "docs/intro.md"))


def test_symlinked_folder_paths_are_resolved(tree):
    link = tree / "linked"
    os.symlink(tree / "docs", link)
    found = discover(["linked"])
    assert rel(found.files, tree) == ["docs/guide/deep/notes.txt", "docs/guide/setup.md",
                                      "docs/intro.md"]  # fmt: skip
    assert found.covers(str(tree / "docs/intro.md"))


def test_an_existing_name_with_glob_characters_is_a_file(tree):
    odd = tree / "notes[1].md"
    odd.write_text("odd name")
    found = discover(["notes[1].md"])
    assert found.files == [odd.resolve()] and found.missing == []
    assert found.covers(str(odd.resolve()))
