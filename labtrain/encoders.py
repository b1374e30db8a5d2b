"""`Encoder`: a base model a user registered (`labtrain embeddings add`), as the catalog keeps it and
a training's spec carries it to the trainer; and which architectures the trainers take."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

# transformers' `model_type` of the encoders every PyTorch trainer takes: each loads with
# AutoModelForTokenClassification / AutoModelForSequenceClassification and has a fast tokenizer.
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "deberta-v2", "distilbert", "electra")
# the training types a registered encoder trains (Visual NER keeps its LayoutLM recipe from MiniLM)
ENCODER_TYPES = ("ner", "assertion", "classification", "relation")
ENCODER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BUILT_IN = ("minilm", "bilstm", "minilm_words", "custom")


class Encoder(BaseModel):
    name: str
    source: str = Field(description="what the user gave: a folder, a store URI or a hub id")
    location: str = Field(description="where labtrain keeps its copy: a folder of the home or a store URI")
    sha256: str = Field(description="digest of the copy's files (names and bytes)")
    model_type: str = Field(description="transformers' model_type: bert, roberta, xlm-roberta, ...")
    architecture: str = Field(description="the config's architectures[0], else the model type's base class")
    tokenizer: str = Field(description="the fast tokenizer's model: WordPiece, BPE (byte-level) or Unigram")
    parameters: int
    hidden_size: int
    layers: int
    max_length: int = Field(description="word pieces per sequence, its special tokens included")
    cased: bool = Field(description="whether the tokenizer keeps upper case (False: it lowercases its input)")
    token_types: bool = Field(description="whether the model takes token type ids (more than one type)")
    languages: list[str] = Field(default_factory=list)
    license: str | None = None
    description: str = ""
    size_mb: float = 0.0
    files: list[str] = Field(default_factory=list, description="the files of labtrain's copy")
    added_by: str | None = None
    added_at: str | None = None
