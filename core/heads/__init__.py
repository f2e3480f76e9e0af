"""The classification heads over frozen features: the late-fusion model (`model`), training from
scratch (`training`), correcting a shipped head with new labels (`correction`, `correction_set`),
temperature scaling (`calibration`), the reproducible recipe that writes a version folder (`recipe`)
and re-split accuracy (`resplit`). Import from the modules; this package re-exports nothing."""
