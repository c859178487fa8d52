"""Part 2, retrieval: the RAG chain (documents, chunks, embeddings, the Chroma store, retrieval metrics) and the product store later pricers reuse."""
