"""Sample builders for the scanner corpus, one module per family of formats.

Each module defines ``SAMPLES: list[Sample]``; :mod:`tests.supplychain.corpus` collects them.
"""
