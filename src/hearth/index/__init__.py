"""Embedders and stores: turning chunks into vectors and keeping them searchable.

`store.SQLiteStore` is the embedded index, `indexer.Indexer` keeps it in step with files on disk,
`embedder.load_embedder` gives the Embedder. Import those modules directly; this package stays
empty so `hearth --help` does not pay for numpy or model code.
"""
