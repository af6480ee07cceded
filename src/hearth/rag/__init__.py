"""Retrieval-augmented answers: retrievers, fusion, grounded prompts and verified citations.

Modules are imported directly (`hearth.rag.retrievers`, ...) so importing the package stays cheap.
"""
