"""Derive the parser's WordNet lexicon: ``python -m chatedit.language.build_lexicon [--wordnet DIR]``.

Reads the WordNet 3.0 database files (Debian's ``wordnet-base`` puts them in ``/usr/share/wordnet``)
and writes ``prompts/lexicon_wordnet.yaml``:

- moods: for every seed in ``prompts/lexicon.yaml`` (``moods.wordnet``), the other words of its
  most common adjective sense and of the senses WordNet calls similar to it ("jovial" -> "jocund",
  "jolly"), with the seed's smile degree;
- description words: for every word of the degree descriptions in ``prompts/attributes.yaml``, the
  synonyms of its most common adjective and noun senses ("thin" -> "slender"), which
  ``descriptions.py`` reads as that word.

Words the hand-kept vocabulary already has, words in the skip lists and words two seeds (or two
description words) both reach are left out: the hand-kept files always win.

The derived file is committed data; the parser and CI never need WordNet. WordNet is (c) 2006
Princeton University, under the WordNet 3.0 licence (permissive: use, copy, modify and distribute
for any purpose, keeping its copyright notice), which the derived file repeats.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections import defaultdict
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
SENSES = 1   # a seed's most common adjective senses that count (WordNet lists senses by frequency)
NOTICE = """\
# Mood words and synonyms of the degree descriptions' words, derived from WordNet 3.0 by
# chatedit/language/build_lexicon.py from the seeds in lexicon.yaml (moods.wordnet) and the words of
# attributes.yaml's degrees. Do not edit by hand: change the seeds or the skip lists and run
#   python -m chatedit.language.build_lexicon --wordnet /usr/share/wordnet
#
# WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Used under the WordNet 3.0
# licence: "Permission to use, copy, modify and distribute this software and database and its
# documentation for any purpose and without fee or royalty is hereby granted, provided that you agree
# to comply with the following copyright notice and statements, including the disclaimer, and that
# the same appear on ALL copies of the software, database and documentation, including modifications
# that you make for internal use or for distribution." THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS"
# AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.
"""


class WordNetAdjectives:
    """One part of speech of a WordNet database directory (``adj`` by default): senses per lemma,
    synsets and their "similar to" pointers."""

    def __init__(self, folder: Path, pos: str = "adj"):
        index, data = folder / f"index.{pos}", folder / f"data.{pos}"
        if not index.is_file() or not data.is_file():
            raise FileNotFoundError(f"no WordNet {pos} files in {folder} (install Debian's wordnet-base)")
        self.senses: dict[str, list[int]] = {}
        for line in index.read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue   # the licence header
            fields = line.split()
            lemma, synset_count, pointer_count = fields[0], int(fields[2]), int(fields[3])
            self.senses[lemma] = [int(x) for x in fields[6 + pointer_count:6 + pointer_count + synset_count]]
        self.words: dict[int, list[str]] = {}
        self.similar: dict[int, list[int]] = {}
        for line in data.read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split(" | ")[0].split()
            offset, count = int(fields[0]), int(fields[3], 16)
            words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * k]) for k in range(count)]
            rest = fields[4 + 2 * count:]
            pointers = [rest[1 + 4 * k:5 + 4 * k] for k in range(int(rest[0]))]
            self.words[offset] = [w.lower().replace("_", " ").replace("-", " ") for w in words]
            self.similar[offset] = [int(p[1]) for p in pointers if p[0] == "&"]

    def synonyms(self, lemma: str) -> set[str]:
        """The words of ``lemma``'s most common senses and of the senses similar to them."""
        found = set()
        for offset in self.senses.get(lemma.replace(" ", "_"), [])[:SENSES]:
            for near in [offset, *self.similar.get(offset, [])]:
                found.update(self.words.get(near, []))
        return found - {lemma}


def _phrases(node) -> set[str]:
    """Every string anywhere in a YAML tree (the hand-kept vocabulary's words)."""
    if isinstance(node, str):
        return {node.lower()}
    if isinstance(node, dict):
        return set().union(*(_phrases(k) | _phrases(v) for k, v in node.items())) if node else set()
    if isinstance(node, list):
        return set().union(*(_phrases(v) for v in node)) if node else set()
    return set()


def derive(wordnet: WordNetAdjectives, lexicon: dict, language: dict) -> dict[int, list[str]]:
    """Mood words per smile degree, from the seeds; only words nothing hand-kept already says."""
    moods = lexicon["moods"]
    taken = _phrases(language) | _phrases({k: v for k, v in lexicon.items() if k != "moods"})
    taken |= _phrases({k: v for k, v in moods.items() if isinstance(k, int)})
    skip = set(moods.get("wordnet_skip", []))
    reached: dict[str, set[int]] = defaultdict(set)
    for degree, seeds in moods["wordnet"].items():
        for seed in seeds:
            for word in {seed} | wordnet.synonyms(seed):
                if re.fullmatch(r"[a-z]+( [a-z]+)?", word) and word not in skip and word not in taken:
                    reached[word].add(int(degree))
    out: dict[int, list[str]] = defaultdict(list)
    for word, degrees in sorted(reached.items()):
        if len(degrees) == 1:
            out[degrees.pop()].append(word)
        else:
            logger.info("left out %r: seeds of degrees %s reach it", word, sorted(degrees))
    return dict(sorted(out.items()))


def describing(parts: list[WordNetAdjectives], lexicon: dict, language: dict, attributes: dict) -> dict[str, str]:
    """Synonym -> the word of a degree description in attributes.yaml it stands for ("slender" -> "thin"),
    from each description word's most common sense; a synonym of two description words is left out."""
    words = {w for a in attributes["attributes"] for d in a["degrees"] for w in re.findall(r"[a-z]+", d.lower())}
    skip = set(lexicon.get("description_skip", []))
    words = {w for w in words if len(w) > 2 and w not in skip}
    taken = _phrases(language) | _phrases(lexicon)   # words the hand-kept vocabulary gives a meaning already
    reached: dict[str, set[str]] = defaultdict(set)
    for word in sorted(words):
        for part in parts:
            for synonym in part.synonyms(word):
                if re.fullmatch(r"[a-z]+", synonym) and synonym not in words | skip | taken:
                    reached[synonym].add(word)
    return {s: ws.pop() for s, ws in sorted(reached.items()) if len(ws) == 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"), help="WordNet 3.0 dict folder")
    parser.add_argument("--out", type=Path, default=PROMPTS / "lexicon_wordnet.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lexicon = yaml.safe_load((PROMPTS / "lexicon.yaml").read_text())
    language = yaml.safe_load((PROMPTS / "language.yaml").read_text())
    attributes = yaml.safe_load((PROMPTS / "attributes.yaml").read_text())
    adjectives = WordNetAdjectives(args.wordnet)
    moods = derive(adjectives, lexicon, language)
    words = describing([adjectives, WordNetAdjectives(args.wordnet, "noun")], lexicon, language, attributes)
    body = yaml.safe_dump({"source": "WordNet 3.0, Princeton University (Debian package wordnet-base)",
                           "moods": moods, "description_words": words}, sort_keys=False, width=110)
    args.out.write_text(NOTICE + body)
    logger.info("wrote %s: %d mood words, %d description words", args.out, sum(map(len, moods.values())), len(words))


if __name__ == "__main__":
    main()
