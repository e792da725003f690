"""The recovery store: partition files, change sets, commits and reads of their state.

The bottom of fastflow's private layers: it imports only the compiled modules
(``fastflow._cext``), never the runtime or the store tools that build on it.
"""
