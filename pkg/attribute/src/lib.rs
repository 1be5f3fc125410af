//! Mixer's attributes as every part of the mesh speaks of them: the config expression language
//! (CEXL) that rules and instances are written in — parsed ([`expr`]), type-checked against the
//! attribute manifests ([`check`]) and evaluated against a bag ([`eval`]) — and the dictionary
//! that lets a `Check` or `Report` name an attribute by a small integer instead of its text.
//!
//! Galley's validation parses expressions with it; Mixer and the proxy's Mixer client evaluate
//! them. The word list itself is part of the API (`istio-api`); this crate holds the code that
//! uses it.

pub mod access_log;
pub mod bag;
pub mod check;
pub mod dictionary;
pub mod eval;
pub mod expr;
pub mod ext_authz;
mod externs;
mod program;
pub mod quota_spec;
pub mod request;
pub mod value;
pub mod wire;

pub use bag::{Bag, Lookup, MapBag, NoTracking, Referenced, Tracker};
pub use check::{AttributeTypes, CompileError};
pub use eval::EvalError;
pub use externs::wildcard_match;
pub use program::Compiled;
pub use value::{OwnedValue, StringMap, Timestamp, Value, ValueType};
