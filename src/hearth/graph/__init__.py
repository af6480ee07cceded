"""Knowledge graph: triples extracted from the indexed chunks with provenance, resolved
entities, an embedded Cypher database in the index folder, graph-augmented retrieval.

    from hearth.graph.build import build_graph          # chunks -> graph.lbug
    from hearth.graph.retrieve import GraphRetriever, open_graph
    from hearth.graph.cypher import run_validated, text_to_cypher

Modules: extract (model -> checked triples), resolve (entities), store (LadybugDB), build,
retrieve (ask --graph, hearth-graph), cypher (validated text-to-Cypher), draw (HTML picture).
"""
