"""Label Studio / Generative AI Lab labeling config (XML) -> `LabelingConfig`.

It answers which training types a project offers, which labels each type learns, and
which results of a completion belong to each type; it rejects configs the product forbids.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from labtrain.errors import ConfigError

TRAINING_TYPES = ("ner", "assertion", "classification", "relation", "visual_ner")
TEXT_TAGS = {"Text", "HyperText", "Paragraphs"}


@dataclass(frozen=True)
class LabelDef:
    value: str
    assertion: bool = False
    model: str | None = None


@dataclass(frozen=True)
class LabelGroup:
    """A `Labels` or `RectangleLabels` tag: spans on a text, or regions on an image."""

    name: str
    to_name: str
    tag: str
    labels: tuple[LabelDef, ...]
    on_image: bool


@dataclass(frozen=True)
class ChoicesGroup:
    name: str
    to_name: str
    multiple: bool
    train: bool
    choices: tuple[str, ...]
    model: str | None = None


@dataclass(frozen=True)
class ResultRule:
    """Which results of a completion a training type reads: by control name, result type, label."""

    from_names: frozenset[str]
    result_types: frozenset[str]
    labels: frozenset[str] | None  # None: every label of those controls


@dataclass
class LabelingConfig:
    xml: str
    texts: dict[str, str] = field(default_factory=dict)  # tag name -> data key ("$text" -> "text")
    images: dict[str, str] = field(default_factory=dict)
    label_groups: list[LabelGroup] = field(default_factory=list)
    choices: list[ChoicesGroup] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    has_relations_tag: bool = False

    @property
    def text_groups(self) -> list[LabelGroup]:
        return [g for g in self.label_groups if not g.on_image]

    @property
    def ner_labels(self) -> list[str]:
        return [lab.value for g in self.text_groups for lab in g.labels if not lab.assertion]

    @property
    def assertion_labels(self) -> list[str]:
        return [lab.value for g in self.text_groups for lab in g.labels if lab.assertion]

    @property
    def visual_labels(self) -> list[str]:
        return [lab.value for g in self.label_groups if g.on_image for lab in g.labels]

    @property
    def classification_group(self) -> ChoicesGroup | None:
        """The Choices group a classification training learns: `train="true"`, else the
        alphabetically first name (the product allows one classifier per training)."""
        if not self.choices:
            return None
        marked = [c for c in self.choices if c.train]
        return marked[0] if marked else min(self.choices, key=lambda c: c.name)

    def training_types(self) -> list[str]:
        offered = []
        if self.ner_labels:
            offered.append("ner")
        if self.assertion_labels:
            offered.append("assertion")
        if self.choices:
            offered.append("classification")
        if self.has_relations_tag and self.ner_labels:
            offered.append("relation")
        if self.visual_labels:
            offered.append("visual_ner")
        return offered

    def labels_for(self, training_type: str) -> list[str]:
        if training_type == "ner":
            return self.ner_labels
        if training_type == "assertion":
            return self.assertion_labels
        if training_type == "classification":
            group = self.classification_group
            return list(group.choices) if group else []
        if training_type == "relation":
            return list(self.relations)
        if training_type == "visual_ner":
            return self.visual_labels
        raise ConfigError(f"unknown training type {training_type!r}; known: {', '.join(TRAINING_TYPES)}")

    def result_rule(self, training_type: str) -> ResultRule:
        """The results a training of this type needs: assertion and relation also need the
        entity spans they qualify or connect."""
        text_names = frozenset(g.name for g in self.text_groups)
        if training_type == "ner":
            return ResultRule(text_names, frozenset({"labels"}), frozenset(self.ner_labels))
        if training_type == "assertion":
            return ResultRule(text_names, frozenset({"labels"}), None)
        if training_type == "classification":
            group = self.classification_group
            return ResultRule(frozenset({group.name} if group else ()), frozenset({"choices"}), None)
        if training_type == "relation":
            return ResultRule(text_names, frozenset({"labels", "relation"}), None)
        if training_type == "visual_ner":
            names = frozenset(g.name for g in self.label_groups if g.on_image)
            return ResultRule(names, frozenset({"labels", "rectanglelabels", "textarea", "rectangle"}), None)
        raise ConfigError(f"unknown training type {training_type!r}; known: {', '.join(TRAINING_TYPES)}")

    def summary(self) -> dict:
        group = self.classification_group
        return {
            "training_types": self.training_types(),
            "ner_labels": self.ner_labels,
            "assertion_labels": self.assertion_labels,
            "classification": None
            if group is None
            else {
                "name": group.name,
                "choice": "multiple" if group.multiple else "single",
                "choices": list(group.choices),
            },
            "choices_groups": [c.name for c in self.choices],
            "relations": self.relations,
            "visual_ner_labels": self.visual_labels,
            "models": sorted(
                {lab.model for g in self.label_groups for lab in g.labels if lab.model}
                | {c.model for c in self.choices if c.model}
            ),
        }


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _data_key(value: str | None) -> str:
    return (value or "").lstrip("$")


def parse_labeling_config(xml: str) -> LabelingConfig:
    """Parse and validate a labeling config; raises `ConfigError` naming the tag or label at fault."""
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", xml, re.IGNORECASE):
        raise ConfigError(
            "labeling config declares a DOCTYPE or entities; labtrain takes plain XML only "
            "(no DTD, no entity expansion, no external references)"
        )
    try:
        root = ET.fromstring(xml.strip())
    except ET.ParseError as exc:
        raise ConfigError(f"labeling config is not valid XML: {exc}") from None
    config = LabelingConfig(xml=xml)
    for el in root.iter():
        name = el.get("name")
        if el.tag in TEXT_TAGS and name:
            config.texts[name] = _data_key(el.get("value"))
        elif el.tag == "Image" and name:
            config.images[name] = _data_key(el.get("value"))
    for el in root.iter():
        if el.tag in ("Labels", "RectangleLabels"):
            config.label_groups.append(_label_group(el, config))
        elif el.tag == "Choices":
            config.choices.append(_choices_group(el))
        elif el.tag == "Relations":
            config.has_relations_tag = True
            config.relations.extend(r.get("value") for r in el.iter("Relation") if r.get("value"))
    _validate(config)
    return config


def _label_group(el: ET.Element, config: LabelingConfig) -> LabelGroup:
    name, to_name = el.get("name"), el.get("toName")
    if not name or not to_name:
        raise ConfigError(f"<{el.tag}> needs both 'name' and 'toName' attributes")
    labels = []
    for lab in el.iter("Label"):
        value = lab.get("value")
        if not value:
            raise ConfigError(f"<Label> without a value in <{el.tag} name={name!r}>")
        labels.append(LabelDef(value, _is_true(lab.get("assertion")), lab.get("model")))
    on_image = el.tag == "RectangleLabels" or to_name in config.images
    return LabelGroup(name, to_name, el.tag, tuple(labels), on_image)


def _choices_group(el: ET.Element) -> ChoicesGroup:
    name = el.get("name")
    if not name:
        raise ConfigError("<Choices> needs a 'name' attribute")
    kind = (el.get("choice") or "single").strip().lower()
    if kind not in ("single", "multiple"):
        raise ConfigError(f"<Choices name={name!r}> has choice={kind!r}; use 'single' or 'multiple'")
    values = tuple(c.get("value") for c in el.iter("Choice") if c.get("value"))
    if not values:
        raise ConfigError(f"<Choices name={name!r}> has no <Choice value=...>")
    return ChoicesGroup(
        name, el.get("toName") or "", kind == "multiple", _is_true(el.get("train")), values, el.get("model")
    )


def _validate(config: LabelingConfig) -> None:
    seen: dict[str, str] = {}
    for group in config.label_groups:
        for lab in group.labels:
            if lab.value in seen and seen[lab.value] != group.name:
                raise ConfigError(f"label {lab.value!r} is defined in both {seen[lab.value]!r} and {group.name!r}")
            seen[lab.value] = group.name
    ner_models = {lab.model for g in config.text_groups for lab in g.labels if not lab.assertion and lab.model}
    assertion_models: dict[str, str] = {}
    for group in config.text_groups:
        for lab in group.labels:
            if not (lab.assertion and lab.model):
                continue
            if lab.model in ner_models or lab.model.lower().startswith("ner"):
                raise ConfigError(
                    f"label {lab.value!r} is an assertion status label but its model {lab.model!r} is a NER "
                    "model: it is not possible to mark a label as an Assertion Status label and use a NER "
                    "model to predict it"
                )
            assertion_models.setdefault(lab.model, lab.value)
    if len(assertion_models) > 1:
        names = ", ".join(f"{m!r} (label {v!r})" for m, v in assertion_models.items())
        raise ConfigError(f"only one Assertion Status model is allowed in a project; this config uses {names}")
    trained = [c.name for c in config.choices if c.train]
    if len(trained) > 1:
        raise ConfigError(f'only one <Choices> group may have train="true"; found {", ".join(map(repr, trained))}')


def deploy_model(xml: str, training_type: str, model_name: str) -> str:
    """The config with the `model` attribute of what `training_type` predicts set to `model_name`
    (replacing the old name): NER labels, assertion labels, the trained Choices group, the
    Relations tag, or image region labels. Comments and the rest of the config are kept."""
    config = parse_labeling_config(xml)
    root = ET.fromstring(xml.strip(), parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    changed = 0
    if training_type in ("ner", "assertion", "visual_ner"):
        for el in root.iter():
            if el.tag not in ("Labels", "RectangleLabels"):
                continue
            on_image = el.tag == "RectangleLabels" or el.get("toName") in config.images
            if on_image != (training_type == "visual_ner"):
                continue
            for lab in el.iter("Label"):
                if training_type == "visual_ner" or _is_true(lab.get("assertion")) == (training_type == "assertion"):
                    lab.set("model", model_name)
                    changed += 1
    elif training_type == "classification":
        group = config.classification_group
        for el in root.iter("Choices"):
            if group and el.get("name") == group.name:
                el.set("model", model_name)
                changed += 1
    elif training_type == "relation":
        for el in root.iter("Relations"):
            el.set("model", model_name)
            changed += 1
    else:
        raise ConfigError(f"unknown training type {training_type!r}; known: {', '.join(TRAINING_TYPES)}")
    if not changed:
        raise ConfigError(f"the labeling config has nothing a {training_type} model predicts")
    deployed = ET.tostring(root, encoding="unicode")
    parse_labeling_config(deployed)  # the rules still hold
    return deployed
