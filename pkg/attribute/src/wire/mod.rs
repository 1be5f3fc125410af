//! Mixer's wire forms of attributes (`istio.mixer.v1`, field numbers as istio/api 1.4.6):
//! compressed attribute sets ([`compressed`]), report batches, delta-encoded or independent
//! ([`batch`]), and the referenced attributes a `Check` answer carries and a client caches on
//! ([`referenced`]).

pub mod batch;
pub mod compressed;
pub mod referenced;
