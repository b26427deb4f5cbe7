"""Model servers and backends: the server base, backend clients, Responses<->Chat conversion, the embedded llama.cpp engine."""
