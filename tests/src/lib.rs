//! candela-tests: end-to-end tests of the engine against the HF golden fixtures live in `tests/`.
