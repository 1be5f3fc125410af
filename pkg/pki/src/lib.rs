//! Istio's public-key infrastructure, shared by everything that makes, hands out or checks
//! workload certificates: Citadel and the node agent, Pilot's mutual-TLS xDS server, the
//! proxy's TLS contexts, the local platform's installer and the tests.
//!
//! - [`ca`]: a certificate authority (self-signed or loaded from PEM) issuing leaf certificates.
//! - [`csr`]: certificate signing requests, made for an identity and read with their signature checked.
//! - [`identity`]: SPIFFE workload identities, `spiffe://TRUST-DOMAIN/ns/NS/sa/SA`.
//! - [`keys`]: private keys a CA signs with (PKCS#8, and PKCS#1 RSA as `openssl genrsa` writes).
//! - [`san`]: subject alternative names from text (IP, URI or DNS).
//! - [`pem`]: certificates and private keys from PEM text or files, with errors naming the file.
//! - [`certificate`]: what a certificate says: its subject alternative names and validity.
//! - [`token`]: service-account tokens, how a workload proves its identity to Citadel.
//! - [`jwk`]: public keys as JSON Web Keys, and JWTs signed with their private halves.
//! - [`files`]: the `cert-chain.pem`/`key.pem`/`root-cert.pem` layout of `/etc/certs`.
//!
//! TLS configuration (rustls) is not made here; `istio-runtime` and the proxy build it from
//! what this crate reads.

pub mod ca;
pub mod certificate;
pub mod csr;
pub mod files;
pub mod identity;
pub mod jwk;
pub mod keys;
pub mod pem;
pub mod san;
pub mod token;

pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
