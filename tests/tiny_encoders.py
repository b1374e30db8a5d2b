"""Tiny random encoders of real architectures, each in a folder of Hugging Face layout: a config
(hidden size 32, two layers), random weights and a fast tokenizer trained with `tokenizers` on the
test texts (word pieces, byte-level BPE or a unigram model, as the architecture's own)."""

from __future__ import annotations

from pathlib import Path

import transformers as hf
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

TEXTS = [
    "Anna Müller flew from Łódź to São Paulo on 3 May with Acme Corp.",
    "The patient denies chest pain but reports fever; no history of diabetes.",
    "Straße, Ærø and Ñuñoa are places; 😀 is an emoji and naïve café is French.",
    "Great product, works well. Terrible service, would not buy again.",
    "John Smith works at Globex in Paris and Maria Garcia lives in Madrid.",
    "Metformin 500 mg was started for type 2 diabetes mellitus.",
]
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
KINDS = ("bert_cased", "roberta", "xlm_roberta", "deberta_v2", "distilbert", "electra")


def corpus(extra: list[str] | None = None) -> list[str]:
    return (TEXTS + (extra or [])) * 20


def wordpiece(texts: list[str], lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return tok


def byte_bpe(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def unigram(texts: list[str], special: list[str], unk: str) -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=special, unk_token=unk, shrinking_factor=0.9)
    )
    tok.decoder = decoders.Metaspace()
    return tok


def bert_specials() -> dict:
    return {
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }


def roberta_specials() -> dict:
    return {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }


def build(kind: str, folder: Path, texts: list[str] | None = None, max_positions: int = 128) -> Path:
    """Save a tiny random encoder of `kind` (one of KINDS, or "gpt2": a decoder) in `folder`."""
    texts = corpus(texts)
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("bert_cased", "distilbert", "electra"):
        lowercase = kind == "distilbert"  # DistilBERT uncased, the others cased
        tok = wordpiece(texts, lowercase)
        tokenizer_class = {
            "bert_cased": hf.BertTokenizerFast,
            "distilbert": hf.DistilBertTokenizerFast,
            "electra": hf.ElectraTokenizerFast,
        }[kind]
        tokenizer = tokenizer_class(tokenizer_object=tok, do_lower_case=lowercase, **bert_specials())
        vocab = tok.get_vocab_size()
        if kind == "bert_cased":
            model = hf.BertModel(hf.BertConfig(vocab_size=vocab, max_position_embeddings=max_positions, **SMALL))
        elif kind == "electra":
            config = hf.ElectraConfig(
                vocab_size=vocab, embedding_size=32, max_position_embeddings=max_positions, **SMALL
            )
            model = hf.ElectraModel(config)
        else:
            config = hf.DistilBertConfig(
                vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=max_positions
            )
            model = hf.DistilBertModel(config)
    elif kind == "roberta":
        tok = byte_bpe(texts)
        tokenizer = hf.RobertaTokenizerFast(tokenizer_object=tok, **roberta_specials())
        config = hf.RobertaConfig(
            vocab_size=tok.get_vocab_size(),
            max_position_embeddings=max_positions + 2,
            pad_token_id=1,
            type_vocab_size=1,
            **SMALL,
        )
        model = hf.RobertaModel(config)
    elif kind == "xlm_roberta":
        tok = unigram(texts, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
        )
        tokenizer = hf.XLMRobertaTokenizerFast(tokenizer_object=tok, **roberta_specials())
        config = hf.XLMRobertaConfig(
            vocab_size=tok.get_vocab_size(),
            max_position_embeddings=max_positions + 2,
            pad_token_id=1,
            type_vocab_size=1,
            **SMALL,
        )
        model = hf.XLMRobertaModel(config)
    elif kind == "deberta_v2":
        tok = unigram(texts, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[UNK]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
        )
        tokenizer = hf.DebertaV2TokenizerFast(tokenizer_object=tok, **bert_specials())
        config = hf.DebertaV2Config(
            vocab_size=tok.get_vocab_size(),
            max_position_embeddings=max_positions,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            **SMALL,
        )
        model = hf.DebertaV2Model(config)
    elif kind == "gpt2":
        tok = byte_bpe(texts)
        tokenizer = hf.GPT2TokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>", bos_token="<s>")
        config = hf.GPT2Config(
            vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_positions=max_positions
        )
        model = hf.GPT2LMHeadModel(config)
    else:
        raise ValueError(f"no tiny encoder of kind {kind!r}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
