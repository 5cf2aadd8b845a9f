"""Plain helpers the test modules share (not test modules: pytest collects nothing here).

One home per concern: `cli` (run the real CLI in a subprocess), `flowing` (start a
run and act once records flow: kill, signal, read beside it), `net` (ports and the loopback HTTP server base the
fakes build on), `vcr` (the CLI inside a vcrpy cassette), `blocks` (connectors.yaml from dicts), `widgets` (a
loopback API whose records change shape), `snowflake` (a fakesnow server per test), `destinations` (one scenario
body, DuckDB or Snowflake underneath), `pullers` / `configs` / `ledger` (project builders of single suites that
another suite reuses). Fixtures live in tests/conftest.py; test modules never import each other.
"""
