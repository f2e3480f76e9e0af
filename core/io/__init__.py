"""Input and output at the edge of the engine: reading and validating CSV tables (`tables`), decoding
images (`images`), keeping paths inside their folder and extracting zips safely (`paths`), and the
label vocabulary (`labels`). Import from the modules; this package re-exports nothing."""
