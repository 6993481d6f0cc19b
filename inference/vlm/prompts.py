"""Versioned prompt templates, kept as data in `inference/vlm/prompts/*.yaml`.

A template file holds: `id` (= the file name), `version`, `source` (where the wording comes
from; verbatim or our adaptation, said so), optional `notes` / `source_text`, `labels` (the
canonical labels the final emotion answer may take; `[]` for free text), optional
`label_words` ({canonical label: the word the prompt uses for it}, e.g. anger -> 'angry') and
`synonyms`, and `steps`. Each step has a `name` (stored as Answer.step_name), a `kind`:

- `label`     an emotion from the step's `labels` (default: the template's);
- `gate`      a yes/no-like choice between the step's own `labels` (two-stage neutral gate);
- `scale`     a number on `scale` (default [1, 9]);
- `free_text` stored as given;

and a `text`, which may contain `{emotion}` / `{valence}` placeholders (context-carry) filled
with the earlier steps' answers. A label step may set `answer_line` (e.g. 'Answer:'): a final
line of exactly that form is the requested format, hence 'ok' rather than 'repaired'.

`PromptTemplate.hash` is the sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8)
of the whole template as loaded from YAML; any change of wording, labels or version changes it.
It is stored as `prompt_hash` with every answer. Predicted labels are canonical labels: rows
of these templates go to the warehouse with `label_set = LABEL_SET` ('canonical').
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
LABEL_SET = "canonical"  # vocabulary of predicted_label for every template here
CANONICAL_LABELS = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
EXTRA_CANONICAL_LABELS = ("calm", "contempt", "confusion")  # also in the dbt label-map seed
GATE_LABELS = ("neutral", "non_neutral")
STEP_KINDS = ("label", "gate", "scale", "free_text")
PLACEHOLDERS = ("emotion", "valence")
_PLACEHOLDER_RE = re.compile(r"\{(emotion|valence)\}")


class PromptTemplateError(ValueError):
    """A template file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class PromptStep:
    name: str
    kind: str
    text: str
    labels: tuple[str, ...] = ()
    label_words: Mapping[str, str] = field(default_factory=dict)
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scale: tuple[float, float] | None = None
    answer_line: str | None = None

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_PLACEHOLDER_RE.findall(self.text)))

    def word(self, label: str) -> str:
        """The word the prompt uses for a label (what context-carry feeds forward)."""
        return self.label_words.get(label, label)

    def render(self, **values: Any) -> str:
        """Fill `{emotion}` / `{valence}`; other braces are left alone."""
        missing = [p for p in self.placeholders if p not in values or values[p] is None]
        if missing:
            raise ValueError(f"prompt step {self.name!r} needs values for {missing}")
        return _PLACEHOLDER_RE.sub(lambda m: _format_value(values[m.group(1)]), self.text)


def _format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: int
    source: str
    labels: tuple[str, ...]
    steps: tuple[PromptStep, ...]
    hash: str
    notes: str | None = None
    system: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def step(self, name: str) -> PromptStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"template {self.id!r} has no step {name!r}")


def template_hash(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def template_from_dict(data: Mapping[str, Any], where: str = "<template>") -> PromptTemplate:
    """Validate and build a template; `where` names the file in error messages."""

    def fail(key: str, problem: str) -> PromptTemplateError:
        return PromptTemplateError(f"{where}: {key}: {problem}")

    if not isinstance(data, Mapping):
        raise fail("(top)", "a template is a mapping with id, version, source, labels, steps")
    for key in ("id", "version", "source", "labels", "steps"):
        if key not in data:
            raise fail(key, "missing")
    if not isinstance(data["id"], str) or not re.fullmatch(r"[a-z0-9_]+", data["id"]):
        raise fail("id", f"use lower-case letters, digits and '_'; got {data['id']!r}")
    if not isinstance(data["version"], int):
        raise fail("version", f"must be an integer; got {data['version']!r}")
    known = set(CANONICAL_LABELS) | set(EXTRA_CANONICAL_LABELS)
    labels = _labels(data["labels"], known, lambda p: fail("labels", p))
    words = _words(data.get("label_words") or {}, labels, lambda p: fail("label_words", p))
    synonyms = _synonyms(data.get("synonyms") or {}, labels, lambda p: fail("synonyms", p))
    if not isinstance(data["steps"], list) or not data["steps"]:
        raise fail("steps", "give a non-empty list of steps")
    steps = []
    for i, raw_step in enumerate(data["steps"]):
        key = f"steps[{i}]"
        if not isinstance(raw_step, Mapping):
            raise fail(key, "a step is a mapping with name, kind, text")
        name, kind, text = raw_step.get("name"), raw_step.get("kind"), raw_step.get("text")
        if not isinstance(name, str) or not name:
            raise fail(f"{key}.name", "missing")
        if kind not in STEP_KINDS:
            raise fail(f"{key}.kind", f"{kind!r} is not one of {', '.join(STEP_KINDS)}")
        if not isinstance(text, str) or not text.strip():
            raise fail(f"{key}.text", "missing")
        step_labels: tuple[str, ...] = ()
        step_words: dict[str, str] = {}
        step_syn: dict[str, tuple[str, ...]] = {}
        if kind in ("label", "gate"):
            allowed = set(GATE_LABELS) if kind == "gate" else known
            step_labels = (
                _labels(raw_step["labels"], allowed, lambda p: fail(f"{key}.labels", p))
                if "labels" in raw_step else labels
            )
            if kind == "gate" and set(step_labels) != set(GATE_LABELS):
                raise fail(f"{key}.labels", f"a gate step answers {list(GATE_LABELS)}")
            if kind == "label" and not step_labels:
                raise fail(f"{key}.labels", "a label step needs labels")
            step_words = {k: v for k, v in words.items() if k in step_labels}
            step_words.update(_words(raw_step.get("label_words") or {}, step_labels,
                                     lambda p: fail(f"{key}.label_words", p)))
            step_syn = {k: v for k, v in synonyms.items() if k in step_labels}
            step_syn.update(_synonyms(raw_step.get("synonyms") or {}, step_labels,
                                      lambda p: fail(f"{key}.synonyms", p)))
        scale = None
        if kind == "scale":
            raw_scale = raw_step.get("scale", [1, 9])
            if (not isinstance(raw_scale, list) or len(raw_scale) != 2
                    or not all(isinstance(x, (int, float)) for x in raw_scale)
                    or not raw_scale[0] < raw_scale[1]):
                raise fail(f"{key}.scale", f"give [low, high], e.g. [1, 9]; got {raw_scale!r}")
            scale = (float(raw_scale[0]), float(raw_scale[1]))
        answer_line = raw_step.get("answer_line")
        if answer_line is not None and not isinstance(answer_line, str):
            raise fail(f"{key}.answer_line", "must be a string such as 'Answer:'")
        steps.append(PromptStep(name=name, kind=kind, text=text, labels=step_labels,
                                label_words=step_words, synonyms=step_syn, scale=scale,
                                answer_line=answer_line))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise fail("steps", f"step names must be unique; got {names}")
    return PromptTemplate(
        id=data["id"], version=data["version"], source=str(data["source"]), labels=labels,
        steps=tuple(steps), hash=template_hash(data), notes=data.get("notes"),
        system=data.get("system"), raw=dict(data),
    )


def _labels(value: Any, allowed: set[str], fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise fail(f"give a list of labels; got {value!r}")
    unknown = [x for x in value if x not in allowed]
    if unknown:
        raise fail(f"{unknown} not among {sorted(allowed)}")
    if len(set(value)) != len(value):
        raise fail(f"duplicate labels in {value}")
    return tuple(value)


def _words(value: Any, labels: tuple[str, ...], fail) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise fail("give a mapping {label: word}")
    for k, v in value.items():
        if k not in labels or not isinstance(v, str):
            raise fail(f"{k!r}: {v!r} must map one of {list(labels)} to a word")
    return {k: v for k, v in value.items()}


def _synonyms(value: Any, labels: tuple[str, ...], fail) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise fail("give a mapping {label: [words]}")
    out = {}
    for k, v in value.items():
        if k not in labels or not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise fail(f"{k!r}: {v!r} must map one of {list(labels)} to a list of words")
        out[k] = tuple(v)
    return out


def load_template_file(path: Path) -> PromptTemplate:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptTemplateError(f"{path}: not valid YAML: {exc}") from None
    template = template_from_dict(data, where=str(path))
    if template.id != path.stem:
        raise PromptTemplateError(f"{path}: id: {template.id!r} must equal the file name "
                                  f"{path.stem!r}")
    return template


def load_templates(directory: Path | None = None) -> dict[str, PromptTemplate]:
    directory = directory or PROMPTS_DIR
    return {p.stem: load_template_file(p) for p in sorted(directory.glob("*.yaml"))}


def load_template(template_id: str, directory: Path | None = None) -> PromptTemplate:
    directory = directory or PROMPTS_DIR
    path = directory / f"{template_id}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise PromptTemplateError(f"no prompt template {template_id!r} in {directory}; "
                                  f"use one of: {', '.join(known)}")
    return load_template_file(path)
