"""A generated corpus of broken and unusual TLC input files, and the tests that run each through the pipeline."""
