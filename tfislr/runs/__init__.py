"""Run artefacts, the ground floor every command reads run folders through.

`run_dir` (one training run's folder: its files, states and writers), `cv_dir` (a
cross-validation's folder and its lookups), `oof` (the out-of-fold predictions file) and
`members` (a trained classifier loaded back from a run folder).
"""
