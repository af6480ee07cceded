"""Hearth: a local-first LLM application engine.

Point it at documents, ask questions, get answers with exact, verified citations.
"""

__version__ = "0.1.0"
