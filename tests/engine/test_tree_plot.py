"""Beam-tree drawings: a hand-made tree written as PNG (a valid image) and as self-contained
HTML (every kept token present, no external resources), plus the layout and file-name checks."""

from __future__ import annotations

import pytest
from PIL import Image

from hearth.engine.decoding import BeamNode, BeamTree
from hearth.engine.tree_plot import ROOT, layout, plot_html, plot_png, plot_tree
from hearth.errors import HearthError

VOCAB = {1: "<s>", 10: " Paris", 11: " London", 12: " is", 13: ".", 14: " the", 15: "<&>"}


def detok(ids):
    return "".join(VOCAB.get(i, f"?{i}") for i in ids)


@pytest.fixture
def tree():
    n = [
        BeamNode(0, 0, 10, 0.7, -0.36, None, "kept"),
        BeamNode(1, 0, 11, 0.2, -1.6, None, "kept"),
        BeamNode(2, 0, 14, 0.05, -3.0, None, "pruned"),
        BeamNode(3, 1, 12, 0.6, -0.87, 0, "kept"),
        BeamNode(4, 1, 13, 0.3, -1.56, 0, "finished"),
        BeamNode(5, 1, 15, 0.5, -2.3, 1, "pruned"),
        BeamNode(6, 2, 13, 0.9, -0.97, 3, "finished"),
    ]
    return BeamTree([1], n, finished=[(6, -0.32), (4, -0.78)])


def test_layout_puts_children_right_of_parents(tree):
    pos = layout(tree)
    assert set(pos) == {ROOT, *range(7)}
    for node in tree.nodes:
        parent = ROOT if node.parent is None else node.parent
        assert pos[node.id][0] == pos[parent][0] + 1
    rows = [y for x, y in pos.values()]
    assert len(set(rows)) >= 4  # leaves on separate rows


def test_png_is_a_valid_image(tree, tmp_path):
    out = plot_png(tree, tmp_path / "tree.png", detok)
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 100


def test_html_is_self_contained_and_shows_every_kept_token(tree, tmp_path):
    out = plot_html(tree, tmp_path / "tree.html", detok)
    page = out.read_text(encoding="utf-8")
    for node in tree.nodes:
        if node.status != "pruned":
            assert VOCAB[node.token_id].replace(" ", "\u2423") in page
    assert "&lt;&amp;&gt;" in page  # escaped, not raw markup
    assert "<svg" in page and "<script>" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert page.count('class="n kept best"') == 2  # Paris, is: the best path's kept nodes


def test_plot_tree_picks_format_by_suffix(tree, tmp_path):
    assert plot_tree(tree, tmp_path / "a.png", detok).exists()
    assert plot_tree(tree, tmp_path / "a.html", detok).exists()
    with pytest.raises(HearthError, match="png or .html"):
        plot_tree(tree, tmp_path / "a.svg", detok)
    with pytest.raises(HearthError, match="empty"):
        plot_png(BeamTree([1]), tmp_path / "b.png")
