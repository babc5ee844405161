//! Entry points for fuzzing and property tests of the wire decoder (not public API).
