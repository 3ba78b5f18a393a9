"""Every run remembered (docs/history.md): `report` and `rerun` append their run to a store (store.py;
tables derived from records.Record and RunInfo: schema.py), and `history` asks it questions (queries.py,
shown by commands.py)."""
