"""Read a label or a number out of a VLM's free-text answer, and say how hard that was.

(Over 400 lines: labels and numbers share the normalising, JSON and refusal helpers, and ~90
lines are the status rules below and the word lists.)

`parse_label(text, labels)` and `parse_scale(text, lo, hi)` return the value and a status
from `inference.models.base.PARSE_STATUSES`:

- ``ok``          the answer is exactly what was asked for: a label (case-insensitive, surrounding
                  quotes / trailing full stop ignored), a whole-text JSON answer
                  (``{"emotion": "happy"}``), or -- for a step that asked for one -- an answer line
                  of exactly the requested form (``Answer: Happy``); a number inside the scale.
- ``repaired``    an answer was recovered: markdown fences stripped, JSON found inside text, an
                  answer marker found by regex (``Emotion: Happy.``, ``The answer is: ang``), a
                  synonym (``angry`` -> anger, ``happiness`` -> happy), a 3-character prefix
                  (``surpr`` -> surprise, as Tae et al. fuzzy-matched), a single emotion named in a
                  sentence, a number clamped into the scale, ``7/9``, a number word (``seven``).
- ``refused``     no answer, and the text contains a refusal phrase (``I can't``, ``I cannot``,
                  ``I'm unable``, ``sorry``, ``as an AI``, ...). A refusal phrase does NOT win over an
                  explicit answer (``Sorry, hard to tell. Answer: sad`` -> sad, repaired), but it
                  does switch off the loosest rule (finding a single emotion mentioned in a
                  sentence), so ``Sorry, I cannot tell whether this person is happy`` is refused,
                  not 'happy'.
- ``off_label``   a clear emotion word that the prompt did not allow (``contempt`` for a 7-label
                  prompt, ``neutral`` for the 6-class prompt, ``doubt``). `ParsedLabel.word` keeps it.
- ``unparseable`` anything else, including ambiguity: two different emotions named with nothing to
                  prefer one (``happy or sad``) is never resolved by guessing.

Fuzzy matching (3-character prefixes) is applied only to an isolated answer -- the whole text,
a JSON field, or the phrase after an answer marker -- never to every word of a sentence, where
'feature' would read as fear and 'surely' as surprise. Chain-of-thought answers are read from
the last answer marker / JSON field / final line, so reasoning that weighs several emotions
does not make them ambiguous.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Surface forms of canonical labels (besides the label itself). Morphological variants and
# plain synonyms only; each maps to exactly one label. A form counts as a synonym (repaired).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "anger": ("angry", "angered", "angrily", "anger"),
    "disgust": ("disgusted", "disgusting", "disgust"),
    "fear": ("fearful", "afraid", "scared", "frightened", "fear"),
    "happy": ("happiness", "happily", "joy", "joyful", "happy"),
    "neutral": ("neutrality", "neutral"),
    "sad": ("sadness", "saddened", "sadly", "sad"),
    "surprise": ("surprised", "surprising", "astonished", "surprise"),
    "calm": ("calmness", "calm"),
    "contempt": ("contemptuous", "contempt"),
    "confusion": ("confused", "confusing", "confusion"),
    "non_neutral": ("non-neutral", "non neutral", "nonneutral", "not neutral"),
}
# Emotion words outside the canonical labels: an answer made of one of them is off_label.
OTHER_EMOTION_WORDS = (
    "doubt", "doubtful", "bored", "boredom", "pain", "shame", "ashamed", "embarrassed",
    "embarrassment", "pride", "proud", "interest", "interested", "excited", "excitement",
    "anxious", "anxiety", "worried", "worry", "tired", "sleepy", "serious", "pensive",
    "thoughtful", "curious", "content", "contentment", "relaxed", "frustrated", "frustration",
    "annoyed", "irritated", "hopeful", "love", "amused", "amusement", "awe", "determined",
    "skeptical", "sceptical", "smug", "nervous", "disappointed", "disappointment", "distress",
    "distressed", "grief", "melancholy", "satisfied", "surprised-happy", "uncertain",
)
REFUSAL_PATTERNS = (
    r"\bi\s+can(?:'|’)?t\b", r"\bi\s+cannot\b", r"\bi\s+can\s+not\b", r"\bi(?:'|’)?m\s+unable\b",
    r"\bi\s+am\s+unable\b", r"\bi(?:'|’)?m\s+not\s+able\b", r"\bi\s+am\s+not\s+able\b",
    r"\bsorry\b", r"\bas\s+an\s+ai\b", r"\bi\s+won(?:'|’)?t\b", r"\bi\s+will\s+not\b",
    r"\bi\s+(?:must|have\s+to)\s+decline\b", r"\bnot\s+able\s+to\s+(?:identify|determine|"
    r"assess|classify|analy[sz]e|help)\b", r"\bunable\s+to\s+(?:identify|determine|assess|"
    r"classify|analy[sz]e|help)\b",
)
_REFUSAL_RE = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.DOTALL)
_JSON_OBJ_RE = re.compile(r"\{[^{}]*\}", re.DOTALL)
LABEL_KEYS = ("emotion", "label", "expression", "facial_expression", "answer", "category",
              "class", "prediction", "predicted_emotion", "classification", "result")
VALUE_KEYS = ("valence", "arousal", "rating", "score", "value", "answer", "pleasantness",
              "intensity", "result")
_MARKER_RE = re.compile(
    r"\b(?:final\s+answer|answer|emotion|facial\s+expression|expression|label|classification|"
    r"prediction|category|valence|arousal|rating|score|pleasantness|intensity)"
    r"\s*(?:\*\*)?\s*(?:is|would\s+be|:|=|-)\s*(?:\*\*)?\s*:?\s*(?P<value>[^\n]*)",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10,
}
_STRIP_CHARS = " \t\r\n\"'`*_.!,;:()[]{}<>“”‘’"


@dataclass(frozen=True)
class ParsedLabel:
    label: str | None  # one of the allowed labels; None unless status is ok / repaired
    status: str  # ok | repaired | refused | unparseable | off_label
    word: str | None = None  # the off-label emotion word, for status off_label
    how: str | None = None  # which rule found it: exact, json, fence, marker, synonym, fuzzy, ...


@dataclass(frozen=True)
class ParsedValue:
    value: float | None  # on the scale (clamped); None unless status is ok / repaired
    status: str  # ok | repaired | refused | unparseable
    raw_value: float | None = None  # the number as given, before clamping
    clamped: bool = False
    how: str | None = None


# ----------------------------------------------------------------------------- labels


class _Vocabulary:
    """Forms of the allowed labels (exact = the label or the word the prompt uses; synonyms)
    and of other emotion words (off-label)."""

    def __init__(self, labels: Sequence[str], words: Mapping[str, str] | None,
                 synonyms: Mapping[str, Iterable[str]] | None) -> None:
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of labels, not a string")
        self.labels = tuple(labels)
        self.exact: dict[str, str] = {}
        self.synonym: dict[str, str] = {}
        for label in self.labels:
            self.exact[_norm(label)] = label
            self.exact[_norm(label.replace("_", "-"))] = label
            if words and label in words:
                self.exact[_norm(words[label])] = label
        for label in self.labels:
            extra = tuple((synonyms or {}).get(label, ()))
            for form in SYNONYMS.get(label, ()) + extra:
                self.synonym.setdefault(_norm(form), label)
        allowed_forms = set(self.exact) | set(self.synonym)
        self.off: dict[str, str] = {}
        for label, forms in SYNONYMS.items():
            if label in self.labels:
                continue
            for form in (label, *forms):
                if _norm(form) not in allowed_forms:
                    self.off.setdefault(_norm(form), label)
        for word in OTHER_EMOTION_WORDS:
            if _norm(word) not in allowed_forms:
                self.off.setdefault(_norm(word), _norm(word))
        # Every form of every allowed label, for 3-character prefix matching.
        self.prefix_forms: dict[str, set[str]] = {}
        for form, label in list(self.exact.items()) + list(self.synonym.items()):
            if len(form) >= 3 and " " not in form:
                self.prefix_forms.setdefault(form[:3], set()).add(label)
        terms = [(f, ("allowed", lab)) for f, lab in {**self.synonym, **self.exact}.items()]
        terms += [(f, ("off", lab)) for f, lab in self.off.items()]
        terms.sort(key=lambda t: -len(t[0]))
        self.terms = terms
        self._term_res = [
            (re.compile(r"(?<![a-z])" + r"[\s_-]+".join(map(re.escape, re.split(r"[\s_-]+", f)))
                        + r"(?![a-z])"), kind)
            for f, kind in terms
        ]

    def mentions(self, text: str) -> tuple[set[str], set[str]]:
        """Allowed labels and off-label words named as whole words (longest form first; a form
        inside a longer one, 'neutral' in 'non-neutral', does not count)."""
        low = text.lower()
        taken: list[tuple[int, int]] = []
        allowed: set[str] = set()
        off: set[str] = set()
        for regex, (kind, label) in self._term_res:
            for m in regex.finditer(low):
                if any(m.start() < e and s < m.end() for s, e in taken):
                    continue
                taken.append((m.start(), m.end()))
                (allowed if kind == "allowed" else off).add(label)
        return allowed, off


def _norm(text: str) -> str:
    text = text.strip(_STRIP_CHARS).lower()
    return re.sub(r"[\s_]+", " ", text).replace(" - ", "-")


def _resolve(candidate: str, vocab: _Vocabulary) -> tuple[str, str | None, str | None]:
    """Resolve an isolated answer. Returns (kind, label_or_word, how) with kind in
    'exact', 'repaired', 'off', 'ambiguous', 'none'."""
    clean = _norm(candidate)
    if not clean:
        return "none", None, None
    if clean in vocab.exact:
        return "exact", vocab.exact[clean], "exact"
    if clean in vocab.synonym:
        return "repaired", vocab.synonym[clean], "synonym"
    if clean in vocab.off:
        return "off", vocab.off[clean], "off_label"
    if re.fullmatch(r"[a-z][a-z-]*", clean) and len(clean) >= 3:
        hits = vocab.prefix_forms.get(clean[:3], set())
        if len(hits) == 1:
            return "repaired", next(iter(hits)), "fuzzy"
        if len(hits) > 1:
            return "ambiguous", None, None
    allowed, off = vocab.mentions(clean)
    if len(allowed) == 1 and not off:
        return "repaired", next(iter(allowed)), "mention"
    if len(off) == 1 and not allowed:
        return "off", next(iter(off)), "off_label"
    if allowed or off:
        return "ambiguous", None, None
    return "none", None, None


def _json_values(obj, keys: Sequence[str]) -> list:
    """Values of the first matching key (case-insensitive) in a JSON object, or the value
    itself for a JSON string / number."""
    if isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
        return [obj]
    if isinstance(obj, list) and len(obj) == 1:
        return _json_values(obj[0], keys)
    if isinstance(obj, dict):
        lowered = {str(k).lower().strip(): v for k, v in obj.items()}
        for key in keys:
            if key in lowered:
                return [lowered[key]]
        if len(obj) == 1:  # {"anything": "happy"}
            return _json_values(next(iter(obj.values())), keys)
    return []


def _try_json(text: str):
    try:
        return True, json.loads(text)
    except (ValueError, TypeError):
        return False, None


def _is_refusal(text: str) -> bool:
    return bool(_REFUSAL_RE.search(text))


def parse_label(
    text: str | None,
    labels: Sequence[str],
    *,
    words: Mapping[str, str] | None = None,
    synonyms: Mapping[str, Iterable[str]] | None = None,
    answer_line: str | None = None,
    json_keys: Sequence[str] = LABEL_KEYS,
) -> ParsedLabel:
    """Read one of `labels` from `text` (see the module docstring for the statuses).

    `words` maps a label to the word the prompt used for it (anger -> 'angry'): that word is an
    exact answer. `synonyms` adds forms per label. `answer_line` (e.g. 'Answer:') is the final
    line format a chain-of-thought prompt asked for: such a line counts as 'ok'.
    """
    vocab = _Vocabulary(labels, words, synonyms)
    if text is None or not text.strip():
        return ParsedLabel(None, "unparseable", how="empty")

    def result(kind, value, how, repaired: bool) -> ParsedLabel | None:
        if kind == "exact":
            return ParsedLabel(value, "repaired" if repaired else "ok", how=how)
        if kind == "repaired":
            return ParsedLabel(value, "repaired", how=how)
        if kind == "off":
            return ParsedLabel(None, "off_label", word=value, how="off_label")
        if kind == "ambiguous":
            return ParsedLabel(None, "unparseable", how="ambiguous")
        return None

    stripped = text.strip()
    # 1. the whole answer is a label
    short = len(stripped) <= 40 and "```" not in stripped
    kind, value, how = _resolve(stripped, vocab) if short else ("none", None, None)
    if how in ("exact", "synonym", "fuzzy", "off_label"):  # one word / one form, not a sentence
        return result(kind, value, how, repaired=False)
    # 2. the whole answer is JSON
    got = _from_json_text(stripped, vocab, json_keys)
    if got is not None:
        return result(got[0], got[1], "json", repaired=False) if got[0] == "exact" else \
            result(*got, repaired=True)
    # 3. markdown fences
    fences = _FENCE_RE.findall(stripped)
    if fences:
        inner = fences[-1][1].strip()
        got = _from_json_text(inner, vocab, json_keys)
        if got is not None:
            return result(got[0], got[1], "fence+json", repaired=True)
        kind, value, how = _resolve(inner, vocab)
        if kind != "none":
            return result(kind, value, "fence+" + (how or ""), repaired=True)
    # 4. a requested answer line, exactly
    lines = [ln.strip() for ln in stripped.splitlines() if ln.strip()]
    if answer_line and lines:
        last = lines[-1].strip("*_ ")
        if last.lower().startswith(answer_line.lower()):
            kind, value, how = _resolve(last[len(answer_line):], vocab)
            if kind != "none":
                return result(kind, value, "answer_line", repaired=kind != "exact")
    # 5. JSON object inside text
    for blob in reversed(_JSON_OBJ_RE.findall(stripped)):
        got = _from_json_text(blob, vocab, json_keys)
        if got is not None:
            return result(got[0], got[1], "embedded_json", repaired=True)
    # 6. the last answer marker that resolves ("Emotion: Happy.", "The answer is: ang")
    for m in reversed(list(_MARKER_RE.finditer(stripped))):
        phrase = re.split(r"(?<=[a-z])[.;!?](?:\s|$)|,\s", m.group("value"), maxsplit=1)[0]
        kind, value, how = _resolve(phrase, vocab)
        if kind != "none":
            return result(kind, value, "marker", repaired=True)
    refusal = _is_refusal(stripped)
    # 7. the final line alone (chain of thought ending in a bare label)
    if len(lines) > 1:
        kind, value, how = _resolve(lines[-1], vocab)
        if kind in ("exact", "repaired", "off") and len(lines[-1].split()) <= 3:
            return result(kind, value, "last_line", repaired=True)
    # 8. a single emotion mentioned in a sentence (switched off by a refusal phrase)
    if not refusal:
        allowed, off = vocab.mentions(stripped)
        if len(allowed) == 1 and not off:
            return ParsedLabel(next(iter(allowed)), "repaired", how="mention")
        if len(off) == 1 and not allowed:
            return ParsedLabel(None, "off_label", word=next(iter(off)), how="off_label")
        if allowed or off:
            return ParsedLabel(None, "unparseable", how="ambiguous")
    if refusal:
        return ParsedLabel(None, "refused", how="refusal_phrase")
    return ParsedLabel(None, "unparseable", how="no_label")


def _from_json_text(text: str, vocab: _Vocabulary, keys: Sequence[str]):
    ok, obj = _try_json(text)
    if not ok or isinstance(obj, (int, float)):
        return None
    for value in _json_values(obj, keys):
        if isinstance(value, str):
            kind, label, how = _resolve(value, vocab)
            if kind != "none":
                return kind, label, how
    return None


# ----------------------------------------------------------------------------- numbers

_NUM = r"[-+−]?\d+(?:[.,]\d+)?"
_RANGE_RE = re.compile(
    rf"(?:from\s+|between\s+|of\s+)?(?<![\d.]){_NUM}\s*(?:to|-|–|and)\s*{_NUM}(?![\d.])",
    re.IGNORECASE)
_OUT_OF_RE = re.compile(rf"(?P<n>{_NUM})\s*(?:/|out\s+of|of)\s*(?P<d>{_NUM})", re.IGNORECASE)
_NUM_RE = re.compile(rf"(?<![\w.]){_NUM}(?![\w])")


def _to_float(s: str) -> float:
    return float(s.replace("−", "-").replace(",", "."))


def parse_scale(text: str | None, lo: float = 1, hi: float = 9, *,
                json_keys: Sequence[str] = VALUE_KEYS) -> ParsedValue:
    """Read one number on [lo, hi] from `text`.

    'ok': the whole answer is a number (or JSON holding one) inside the scale. 'repaired':
    found in fences / after a marker ('Valence: 7') / as 'n/9' or 'n out of 9' / as one English
    number word zero..ten ('seven'), or clamped into the scale ('Valence: 12' -> 9, raw_value
    12). Scale statements ('from 1 to 9', '1-9') are ignored. Two different candidate numbers
    without a marker preferring one -> 'unparseable'. No number and a refusal phrase ->
    'refused'.
    """
    if text is None or not text.strip():
        return ParsedValue(None, "unparseable", how="empty")
    stripped = text.strip()

    def done(raw: float, how: str, repaired: bool) -> ParsedValue:
        clamped = min(max(raw, lo), hi)
        changed = clamped != raw
        return ParsedValue(float(clamped), "repaired" if (repaired or changed) else "ok",
                           raw_value=float(raw), clamped=changed, how=how)

    bare = stripped.strip(" \t\r\n\"'*")
    if re.fullmatch(_NUM + r"\.?", bare):
        return done(_to_float(bare.rstrip(".")), "exact", repaired=False)
    ok, obj = _try_json(stripped)
    if ok:
        got = _number_from_json(obj, json_keys)
        if got is not None:
            return done(got, "json", repaired=False)
    fences = _FENCE_RE.findall(stripped)
    if fences:
        inner = fences[-1][1].strip()
        ok, obj = _try_json(inner)
        got = _number_from_json(obj, json_keys) if ok else None
        if got is None:
            sub = parse_scale(inner, lo, hi, json_keys=json_keys)
            if sub.raw_value is not None:
                return done(sub.raw_value, "fence+" + (sub.how or ""), repaired=True)
        else:
            return done(got, "fence+json", repaired=True)
    for blob in reversed(_JSON_OBJ_RE.findall(stripped)):
        ok, obj = _try_json(blob)
        got = _number_from_json(obj, json_keys) if ok else None
        if got is not None:
            return done(got, "embedded_json", repaired=True)
    for m in reversed(list(_MARKER_RE.finditer(stripped))):
        value = _numbers(m.group("value"), lo, hi)
        if len(value) >= 1:
            return done(value[0], "marker", repaired=True)
    numbers = _numbers(stripped, lo, hi)
    if len(set(numbers)) == 1:
        return done(numbers[0], "number", repaired=True)
    if len(set(numbers)) > 1:
        return ParsedValue(None, "unparseable", how="ambiguous")
    words = [w for w in re.findall(r"[a-z]+", stripped.lower()) if w in _NUMBER_WORDS]
    if len(set(words)) == 1 and not _is_refusal(stripped):
        return done(float(_NUMBER_WORDS[words[0]]), "number_word", repaired=True)
    if _is_refusal(stripped):
        return ParsedValue(None, "refused", how="refusal_phrase")
    return ParsedValue(None, "unparseable", how="ambiguous" if words else "no_number")


def _numbers(text: str, lo: float, hi: float) -> list[float]:
    """Candidate numbers in order: 'n/d' and 'n out of d' give n; scale statements
    ('1 to 9', '1-9') are dropped."""
    text = _RANGE_RE.sub(" ", text)
    found: list[tuple[int, float]] = []

    def take_fraction(m: re.Match) -> str:
        found.append((m.start(), _to_float(m.group("n"))))
        return " " * (m.end() - m.start())

    text = _OUT_OF_RE.sub(take_fraction, text)
    found += [(m.start(), _to_float(m.group(0))) for m in _NUM_RE.finditer(text)]
    return [v for _, v in sorted(found)]


def _number_from_json(obj, keys: Sequence[str]) -> float | None:
    for value in _json_values(obj, keys):
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"\s*" + _NUM + r"\s*", value):
            return _to_float(value.strip())
    return None
