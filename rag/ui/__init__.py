"""The Streamlit user interface.  Each page module only calls library functions (``rag.pipeline``,
``rag.ingest``, ``rag.uploads``, ``rag.schemes``, ``rag.evaluate``); none holds retrieval logic.

Page modules double as Streamlit page scripts: ``app.py`` registers them with
``st.Page("rag/ui/<page>.py")`` and Streamlit runs them as ``__main__``.
"""
