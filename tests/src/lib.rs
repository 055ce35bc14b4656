//! Helpers to boot the whole mesh in-process for end-to-end tests.
