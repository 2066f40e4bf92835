"""Verb-noun diversity (the paper's Figure 2): each instruction's root verb and its direct-object noun.

With spaCy and an English model installed (`pip install spacy` and a model such as en_core_web_sm), the
dependency parse gives the root verb and its `dobj`, as the paper did with the Berkeley parser. Without them
(this project's machines cannot download spaCy models) a documented heuristic stands in: instructions are
mostly imperatives, so the first word is taken as the verb when it is a common imperative verb, and the object
is the first following word that is not a determiner, pronoun, adjective-like modifier or preposition. The
report states which method produced its chart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

VERBS = set(
    """
add adjust analyze analyse answer apply arrange ask assess build calculate categorize change check choose
classify clean combine compare compile complete compose compute condense construct convert correct count
create debug decide decode define delete demonstrate describe design detect determine develop devise diagnose
discuss draft edit estimate evaluate explain express extract fill find fix format formulate generate give guess
identify illustrate implement improve infer insert interpret invent label list locate make match measure
merge modify name offer organize outline paraphrase parse pick plan predict prepare present produce propose
provide rank rate read recommend reformat remove rename reorder rephrase replace report rewrite say schedule
select share shorten show simplify solve sort spell state suggest summarize summarise support swap tag teach
tell test think transform translate turn update use validate verify write
""".split()
)

SKIP = set(
    """
a an the some any this that these those my your our their his her its it me us them him one two three four
five several many few each every all both following given new short long simple brief detailed good best
list of to for about with in on from into at by up out down more most other another different appropriate
possible creative funny interesting original random specific second first next own better few how what why
when where which who whom whether if favorite favourite
""".split()
)


def heuristic_pair(instruction: str) -> tuple[str, str] | None:
    words = [w.strip(".,:;!?\"'()[]").lower() for w in instruction.split()]
    if not words or words[0] not in VERBS:
        return None
    for word in words[1:]:
        if word and word.isalpha() and word not in SKIP:
            return words[0], word
    return None


def _spacy_pairs(instructions: list[str]) -> list[tuple[str, str] | None] | None:
    try:
        import spacy

        nlp = spacy.load("en_core_web_sm", disable=["ner"])
    except Exception:  # spaCy or its model missing: any failure means "use the heuristic"
        return None
    pairs: list[tuple[str, str] | None] = []
    for doc in nlp.pipe(instructions):
        root = next((t for t in doc if t.dep_ == "ROOT" and t.pos_ == "VERB"), None)
        obj = next((c for c in root.children if c.dep_ == "dobj"), None) if root is not None else None
        pairs.append((root.lemma_.lower(), obj.lemma_.lower()) if obj is not None else None)
    return pairs


def verb_noun_pairs(instructions: Iterable[str]) -> tuple[list[tuple[str, str] | None], str]:
    """One (verb, noun) or None per instruction, and the name of the method that produced them."""
    texts = list(instructions)
    parsed = _spacy_pairs(texts)
    if parsed is not None:
        return parsed, "spaCy dependency parse (en_core_web_sm): root verb and its direct object"
    return [heuristic_pair(t) for t in texts], (
        "heuristic (no spaCy English model installed): first word when it is a common imperative verb, "
        "and the next content word as its object"
    )


def top_verbs_and_nouns(
    pairs: Iterable[tuple[str, str] | None], verbs: int = 20, nouns: int = 4
) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """The most common root verbs, each with its count and its most common direct-object nouns."""
    found = [p for p in pairs if p]
    by_verb = Counter(v for v, _ in found)
    out = []
    for verb, count in by_verb.most_common(verbs):
        objects = Counter(n for v, n in found if v == verb)
        out.append((verb, count, objects.most_common(nouns)))
    return out
