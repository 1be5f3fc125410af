//! Mixer's global word list, exactly as Istio 1.4.6 shipped it (`mixer/v1/global_dictionary`):
//! one word a line, in the order both sides of a `Check`/`Report` call index it. The list is
//! append-only upstream, so a word's position is part of the wire protocol. Like the Go and C++
//! lists generated from the same YAML, the words `'200'`, `'0'`, `'1'` and `"-"` keep their quotes.
//!
//! Looking words up and compressing attributes with them is `istio-attribute`'s job.

/// The word list, one word a line.
pub const GLOBAL_WORD_LIST: &str = include_str!("../proto/mixer/v1/global_dictionary.txt");
