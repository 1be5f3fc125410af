//! Mixer's attributes as every part of the mesh speaks of them: the config expression language
//! (CEXL) that rules and instances are written in, and the dictionary that lets a `Check` or
//! `Report` name an attribute by a small integer instead of its text.
//!
//! Galley's validation parses expressions with it; Mixer's type checker and evaluator and the
//! proxy's Mixer client build on it. The word list itself is part of the API (`istio-api`); this
//! crate holds the code that uses it.

pub mod dictionary;
pub mod expr;
