"""The sentence-transformers embedder and CrossEncoder reranker paths, with real tiny models built here.

No hub download: the models are constructed from a config with random weights and a
character-level tokenizer, saved to a folder and loaded by name like a user's model.
"""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rag.config import EmbedderSettings, RetrievalSettings, Settings  # noqa: E402
from rag.embeddings import SentenceTransformerEmbeddings, load_embedder, prefixes_for  # noqa: E402
from rag.index import IncompatibleEmbedder  # noqa: E402
from rag.retrieve import HybridRetriever, Reranker  # noqa: E402

CHARS = sorted(set("デジタル田園都市国家構想交付金地方公共団体移住こども家庭センター設置目標年度の実装に取り組む支援事業query:passage 検索クエリ文書ー、。？0123456789"))


def _tokenizer(folder: Path):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    fast.save_pretrained(folder)
    return len(vocab)


def _bert_config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=256, **extra)


@pytest.fixture(scope="module")
def tiny_embedder_dir(tmp_path_factory) -> Path:
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("models") / "tiny-bert"
    vocab_size = _tokenizer(base)
    BertModel(_bert_config(vocab_size)).save_pretrained(base)
    st = SentenceTransformer(modules=[models.Transformer(str(base)), models.Pooling(32, "mean")], device="cpu")
    out = base.parent / "tiny-e5-small"  # the family name decides the prefixes, as for intfloat/multilingual-e5-*
    st.save(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("models") / "tiny-reranker"
    vocab_size = _tokenizer(folder)
    BertForSequenceClassification(_bert_config(vocab_size, num_labels=1)).save_pretrained(folder)
    return folder


def test_prefixes_follow_the_model_family():
    assert prefixes_for("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert prefixes_for("cl-nagoya/ruri-v3-30m") == ("検索クエリ: ", "検索文書: ")
    assert prefixes_for("cl-nagoya/ruri-small") == ("クエリ: ", "文章: ")
    assert prefixes_for("BAAI/bge-m3") == ("", "")


def test_local_sentence_transformers_model_embeds_with_prefixes(tiny_embedder_dir):
    emb = load_embedder(EmbedderSettings(model=str(tiny_embedder_dir)))
    assert isinstance(emb, SentenceTransformerEmbeddings)
    assert emb.dimension == 32 and emb.name == "local:tiny-e5-small"
    docs = emb.embed_array(["デジタル田園都市国家構想交付金", "こども家庭センター"])
    assert docs.shape == (2, 32) and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-5)
    query = emb.embed_query_array("デジタル田園都市国家構想交付金")
    # "query: " vs "passage: " prefixes make the same text embed differently.
    assert not np.allclose(query, docs[0])
    assert len(emb.embed_documents(["移住"])[0]) == 32  # the LangChain Embeddings interface


def test_index_built_with_local_model_is_searchable_and_refused_by_another(tmp_path, tiny_embedder_dir, embedder):
    from conftest import ROOT
    from rag.ingest import ingest
    from rag.pipeline import Pipeline

    settings = Settings(corpus_dir=ROOT / "corpus", index_dir=tmp_path / "st", embedder={"model": str(tiny_embedder_dir)})
    report = ingest(settings)
    assert not report.failed
    pipeline = Pipeline.load(settings)
    answer = pipeline.ask("こども家庭センターの設置目標は？")
    assert answer.hits and pipeline.index.manifest.dimension == 32
    with pytest.raises(IncompatibleEmbedder, match="rag ingest"):
        Pipeline.load(Settings(corpus_dir=settings.corpus_dir, index_dir=settings.index_dir), embedder=embedder)


def test_missing_hub_model_fails_at_once_with_a_clear_message():
    from rag.embeddings import EmbedderError

    with pytest.raises(EmbedderError, match="読み込めません"):
        load_embedder(EmbedderSettings(model="no-such-org/no-such-model"))


def test_cross_encoder_reranker_reorders_fused_candidates(tiny_reranker_dir, pipeline):
    reranker = Reranker(str(tiny_reranker_dir))
    plain = pipeline.retriever.search("こども家庭センターの設置目標は？", k=8)
    reranked = reranker.rerank("こども家庭センターの設置目標は？", plain)
    assert sorted(h.chunk.id for h in reranked) == sorted(h.chunk.id for h in plain)
    scores = [h.score for h in reranked]
    assert scores == sorted(scores, reverse=True)
    # The cross-encoder's own scores, not the fused ones carried through.
    assert sorted(scores) != sorted(h.score for h in plain)
    retriever = HybridRetriever(
        index=pipeline.index, embedder=pipeline.embedder, settings=RetrievalSettings(reranker=str(tiny_reranker_dir)), reranker=reranker
    )
    docs = retriever.invoke("こども家庭センターの設置目標は？")
    assert docs and {"source", "page", "heading", "chunk_id", "score"} <= set(docs[0].metadata)
