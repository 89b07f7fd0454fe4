"""The vector stores of LlamaIndex and LangChain on shoal, driven as their users drive them, with
a small deterministic local embedding (hashed bag of words: no network, no model download)."""

import hashlib
import math
import uuid

import pytest
from qdrant_client import models

DIM = 32

DOCS = {
    "doc-cats": ["cats purr and sleep all day", "a cat chases the red laser dot", "kittens drink warm milk"],
    "doc-ships": ["ships sail across the cold sea", "the harbour holds old fishing boats", "a storm tosses the ship"],
    "doc-bread": ["bread rises in a warm oven", "flour water salt and yeast make bread", "the baker slices fresh bread"],
}


def embed(text: str) -> list[float]:
    """Hashed bag of words, normalised: texts sharing words are close."""
    v = [0.0] * DIM
    for word in text.lower().split():
        h = hashlib.sha256(word.encode()).digest()
        v[h[0] % DIM] += 1.0 if h[1] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def cosine(query: str, text: str) -> float:
    return sum(a * b for a, b in zip(embed(query), embed(text)))


def assert_nearest(query: str, texts: list[str], got: list[tuple[str, float]], k: int,
                   embedded=lambda text: text) -> None:
    """`got` (text, score) are the `k` texts nearest to `query` by cosine similarity, computed
    here: each score is its text's, and the scores are the `k` best (ties in any order).
    `embedded` gives the string the store embedded for a text (LlamaIndex adds the metadata)."""
    best = sorted((cosine(query, embedded(t)) for t in texts), reverse=True)[:k]
    assert len(got) == len(best), got
    for (text, score), want in zip(got, best):
        assert text in texts and abs(score - cosine(query, embedded(text))) < 1e-4, (text, score)
        assert abs(score - want) < 1e-4, (got, best)


def test_llamaindex_store_with_default_settings(indexed_node):
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    class HashEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return embed(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embed(text)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return embed(query)

    client = indexed_node.client()
    store = QdrantVectorStore(collection_name="llama_default", client=client)
    nodes = [
        TextNode(
            text=text,
            id_=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc}/{i}")),
            metadata={"topic": doc.removeprefix("doc-"), "position": i},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
        )
        for doc, texts in DOCS.items()
        for i, text in enumerate(texts)
    ]
    index = VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=HashEmbedding()
    )
    info = client.get_collection("llama_default")
    assert info.points_count == 9
    # The index LlamaIndex makes on its first add, with its default settings.
    assert info.payload_schema["doc_id"].data_type == models.PayloadSchemaType.KEYWORD
    assert info.payload_schema["doc_id"].points == 9

    query = "warm bread from the oven"
    all_texts = [t for texts in DOCS.values() for t in texts]
    as_embedded = {n.get_content(): n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes}.get
    hits = index.as_retriever(similarity_top_k=3).retrieve(query)
    assert_nearest(query, all_texts, [(h.node.get_content(), h.score) for h in hits], 3, as_embedded)
    assert hits[0].node.get_content() == "bread rises in a warm oven"
    assert hits[0].node.ref_doc_id == "doc-bread"

    ships_only = MetadataFilters(filters=[MetadataFilter(key="topic", value="ships")])
    hits = index.as_retriever(similarity_top_k=5, filters=ships_only).retrieve(query)
    assert_nearest(query, DOCS["doc-ships"], [(h.node.get_content(), h.score) for h in hits], 3, as_embedded)

    index.delete_ref_doc("doc-bread")
    assert client.count("llama_default", exact=True).count == 6
    hits = index.as_retriever(similarity_top_k=9).retrieve(query)
    assert {h.node.ref_doc_id for h in hits} == {"doc-cats", "doc-ships"}


def test_langchain_dense_store(indexed_node):
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore

    class HashEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [embed(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return embed(text)

    client = indexed_node.client()
    client.create_collection("langchain_dense", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    store = QdrantVectorStore(client=client, collection_name="langchain_dense", embedding=HashEmbeddings())
    texts = [t for texts in DOCS.values() for t in texts]
    metadatas = [{"topic": doc.removeprefix("doc-")} for doc, ts in DOCS.items() for _ in ts]
    ids = store.add_texts(texts, metadatas=metadatas)
    assert len(ids) == 9 and client.count("langchain_dense", exact=True).count == 9

    query = "the cat chases a red laser"
    found = store.similarity_search_with_score(query, k=3)
    assert_nearest(query, texts, [(d.page_content, s) for d, s in found], 3)
    assert found[0][0].page_content == "a cat chases the red laser dot"
    ships = models.Filter(must=[models.FieldCondition(key="metadata.topic", match=models.MatchValue(value="ships"))])
    found = store.similarity_search_with_score(query, k=4, filter=ships)
    assert_nearest(query, DOCS["doc-ships"], [(d.page_content, s) for d, s in found], 3)
    assert all(d.metadata["topic"] == "ships" for d, _ in found)

    cats = [i for i, m in zip(ids, metadatas) if m["topic"] == "cats"]
    assert store.delete(ids=cats)
    assert client.count("langchain_dense", exact=True).count == 6
    assert {d.metadata["topic"] for d in store.similarity_search(query, k=9)} == {"ships", "bread"}
