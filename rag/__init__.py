"""政策文書RAG: Japanese question answering over government strategy documents, with page citations."""

__version__ = "0.1.0"
