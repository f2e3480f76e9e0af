"""Features: the SQLite feature store keyed by encoder id and content (`store`), pairs of text and
image turned into feature matrices through that store (`pipeline`), and the in-memory labelled
matrices the heads train on (`sets`). Import from the modules; this package re-exports nothing."""
