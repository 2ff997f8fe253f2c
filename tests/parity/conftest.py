"""The fixture builder and the oracle-side script run under other interpreters (the original's transformers 4.31
venv for ``oracle_side.py``) and only by hand: never collected."""

collect_ignore = ["build_fixtures.py", "oracle_side.py"]
