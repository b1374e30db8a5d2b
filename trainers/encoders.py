"""Registered encoders (`labtrain embeddings add`): check that the trainers can take a model folder
(config and weights load, a fast tokenizer gives offsets, the architecture is an encoder) and
describe it; and, for a training, the registered encoder's folder, tokenizer and head config.
Fetching a source (a folder, a store URI, a hub id) is `ray_app.encoder_registry`'s."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from labtrain.encoders import SUPPORTED_MODEL_TYPES, Encoder
from labtrain.errors import ValidationError

# the files a model folder keeps (what AutoConfig, AutoModel and AutoTokenizer read, and its card)
KEPT = re.compile(
    r"^(config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|pytorch_model(-\d+-of-\d+)?\.bin"
    r"|pytorch_model\.bin\.index\.json|tokenizer(_config)?\.json|special_tokens_map\.json|added_tokens\.json"
    r"|vocab\.(txt|json)|merges\.txt|.*\.model|spm\.model|README\.md|LICENSE.*)$"
)
WEIGHTS = re.compile(r"^(model(-\d+-of-\d+)?\.safetensors|pytorch_model(-\d+-of-\d+)?\.bin)$")
BYTE_LEVEL = ("roberta", "camembert")  # byte-level BPE: words given one by one need a leading space


def describe(name: str, folder: Path, source: str) -> Encoder:
    """What the trainers need to know of the model in `folder`, once it is known they can take it:
    each reason they cannot is a ValidationError naming the file or architecture at fault."""
    from transformers import AutoConfig, AutoModel

    def refuse(why: str) -> ValidationError:
        return ValidationError(f"encoder {name!r} ({source}): {why}")

    files = {p.name for p in folder.iterdir()}
    if "config.json" not in files:
        raise refuse("holds no config.json: not a model folder in Hugging Face layout")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise refuse(f"config.json does not load ({_first_line(exc)})") from None
    architecture = (getattr(config, "architectures", None) or [type(config).__name__.replace("Config", "Model")])[0]
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        kind = "a decoder (a generative model)" if _is_decoder(config) else "not an architecture the trainers take"
        raise refuse(
            f"architecture {architecture} (model_type {config.model_type!r}) is {kind}; labtrain trains "
            f"encoders: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if not any(WEIGHTS.match(f) for f in files):
        raise refuse("holds no weights (model.safetensors or pytorch_model.bin)")
    tokenizer = _tokenizer_or_refusal(folder, config.model_type, refuse, files)
    try:
        model, loading = AutoModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as exc:
        raise refuse(f"the weights do not load into {architecture} ({_first_line(exc)})") from None
    missing = sorted(k for k in loading.get("missing_keys", ()) if "pooler" not in k)
    if missing:
        raise refuse(
            f"the weights do not fit config.json: {len(missing)} of the model's tensors are missing "
            f"({', '.join(missing[:3])}, ...)"
        )
    card = model_card(folder / "README.md")
    weights = sum((folder / f).stat().st_size for f in files if WEIGHTS.match(f))
    return Encoder(
        name=name,
        source=source,
        location=str(folder),
        sha256=folder_digest(folder),
        model_type=config.model_type,
        architecture=architecture,
        tokenizer=json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"],
        parameters=sum(p.numel() for p in model.parameters()),
        hidden_size=config.hidden_size if hasattr(config, "hidden_size") else config.dim,
        layers=getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", 0),
        max_length=max_length(config, tokenizer),
        cased=cased(tokenizer),
        token_types=(getattr(config, "type_vocab_size", 0) or 0) > 1,
        languages=card["languages"],
        license=card["license"],
        size_mb=round(weights / 1e6, 1),
    )


def _tokenizer_or_refusal(folder: Path, model_type: str, refuse, files: set[str]):
    tokenizer_files = {"tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spm.model"}
    if not files & tokenizer_files and not any(f.endswith(".model") for f in files):
        raise refuse(
            "holds no tokenizer (tokenizer.json, or vocab.txt, vocab.json + merges.txt, a sentencepiece .model)"
        )
    try:
        tokenizer = load_tokenizer(folder, model_type)
    except Exception as exc:
        raise refuse(f"its tokenizer does not load ({_first_line(exc)})") from None
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise refuse("its tokenizer is not a fast one (tokenizer.json): labtrain needs its word ids and offsets")
    try:
        encoded = tokenizer(["Straße", "Łódź"], is_split_into_words=True, return_offsets_mapping=True)
        assert set(encoded.word_ids()) - {None} == {0, 1}
    except Exception as exc:
        raise refuse(f"its tokenizer gives no word ids or offsets ({_first_line(exc)})") from None
    return tokenizer


def load_tokenizer(folder: Path, model_type: str):
    """The encoder's fast tokenizer, ready for words given one by one (`is_split_into_words`)."""
    from transformers import AutoTokenizer

    extra = {"add_prefix_space": True} if model_type in BYTE_LEVEL else {}
    return AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)


def head_config(folder: Path, dropout: float, **labels):
    """The encoder's config for a model with a new head: its labels, and the dropout before the head
    under the name the architecture reads (BERT, RoBERTa, ELECTRA: classifier_dropout; DistilBERT:
    seq_classif_dropout; DeBERTa-v2 keeps its hidden dropout)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, **labels)
    for name in ("classifier_dropout", "seq_classif_dropout"):
        if hasattr(config, name):
            setattr(config, name, dropout)
            break
    return config


def max_length(config, tokenizer) -> int:
    """Word pieces per sequence: the tokenizer's limit where it has one, else the positions the model
    has (RoBERTa's count its padding offset: 514 are 512)."""
    positions = getattr(config, "max_position_embeddings", 512)
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        positions -= (config.pad_token_id or 0) + 1
    limit = tokenizer.model_max_length
    return int(min(positions, limit)) if limit and limit < 1_000_000 else int(positions)


def cased(tokenizer) -> bool:
    """Whether the tokenizer keeps case: its normalizer (or its do_lower_case) does not lowercase."""
    if getattr(tokenizer, "do_lower_case", False):
        return False
    normalizer = tokenizer.backend_tokenizer.normalizer
    return normalizer is None or normalizer.normalize_str("Ab") != "ab"


def model_card(path: Path) -> dict:
    """License and languages from a model card's YAML front matter (None and [] when absent)."""
    found = {"license": None, "languages": []}
    if not path.is_file():
        return found
    text = path.read_text(errors="replace")
    if not text.startswith("---"):
        return found
    import yaml

    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return found
    if not isinstance(meta, dict):
        return found
    languages = meta.get("language") or []
    found["languages"] = [str(x) for x in ([languages] if isinstance(languages, str) else languages)][:200]
    found["license"] = str(meta["license"]) if meta.get("license") else None
    return found


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(folder.iterdir()):
        if item.is_file():
            digest.update(item.name.encode() + b"\0")
            with item.open("rb") as data:
                for chunk in iter(lambda: data.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def local_folder(encoder: Encoder) -> Path:
    """The folder of a registered encoder on this node (`ray_app.workspace.job_files` puts a copy
    from the artifact store or the head's home there before the trainer starts)."""
    folder = Path(encoder.location)
    if urlsplit(encoder.location).scheme or not (folder / "config.json").is_file():
        raise ValidationError(f"encoder {encoder.name!r}: its copy is not on this node ({encoder.location})")
    return folder


def _is_decoder(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or bool(getattr(config, "is_decoder", False))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
