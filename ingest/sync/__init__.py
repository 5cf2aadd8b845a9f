"""The sync, along its stages. One implementation: every CLI command, test and Metaflow step runs a block through
`runner.AirbyteManager`, which conducts the stages below and owns none of their details.

- `plan.py`: the block's streams → the connector's configured catalog and our per-stream targets (write mode, key,
  cursor), every config problem found before the destination is opened;
- `loop.py`: the reading thread and the writer thread, the batch bounds, progress;
- `finish.py`: what surrounds the loop — stream locks and their heartbeat, runs found dead, the run record, the
  run's events (data_landed / data_failed) and their publishing;
- `state.py`: Airbyte state messages as we store them;
- `results.py`: what a run returns (`SyncResult`, one `StreamResult` per stream).
"""
