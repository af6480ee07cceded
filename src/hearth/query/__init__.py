"""Query construction: questions turned into SQL (hearth.query.sql), into metadata filters plus a
search query (hearth.query.self_query), and into Cypher over the knowledge graph (hearth.graph).
"""
