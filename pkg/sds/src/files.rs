//! A secret source that follows a certificate directory in the `/etc/certs` layout
//! (`cert-chain.pem`, `key.pem`, `root-cert.pem`): the files of a mounted `istio.<sa>` Secret,
//! which Citadel rewrites as it rotates the certificate. The directory is read every
//! `interval`; a new version is published only when the files differ from what is served and
//! make a consistent bundle (a key that is not the certificate's — files caught between two
//! rewrites — waits for the next read).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use istio_pki::files::CertDir;
use tokio::sync::watch;

use crate::{SecretsWatch, WorkloadSecrets};

/// Follows `dir` until the returned watch has no receivers left.
pub fn follow(dir: PathBuf, interval: Duration) -> SecretsWatch {
    let (sender, receiver) = watch::channel::<Option<Arc<WorkloadSecrets>>>(None);
    tokio::spawn(async move {
        let certs = CertDir::new(dir);
        let mut problem = String::new();
        let mut version = 0;
        loop {
            match certs.read() {
                Ok(bundle) => {
                    let unchanged = sender.borrow().as_ref().is_some_and(|served| served.bundle == bundle);
                    if !unchanged {
                        match bundle.check() {
                            Ok(()) => {
                                version += 1;
                                tracing::info!(dir = %certs.dir().display(), version, "serving new workload certificates");
                                sender.send_replace(Some(Arc::new(WorkloadSecrets { bundle, version })));
                                problem.clear();
                            }
                            Err(error) => note(&mut problem, format!("{}: {error}", certs.dir().display())),
                        }
                    }
                }
                // Not mounted yet, or the Secret is not there yet: nothing is served meanwhile.
                Err(error) => note(&mut problem, error.to_string()),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = sender.closed() => return,
            }
        }
    });
    receiver
}

/// Logs a problem once, not at every read.
fn note(last: &mut String, problem: String) {
    if *last != problem {
        tracing::info!("workload certificates not served yet: {problem}");
        *last = problem;
    }
}

#[cfg(test)]
mod tests {
    use istio_pki::ca::{CertificateAuthority, LeafRequest};
    use istio_pki::files::KeyCertBundle;

    use super::*;

    fn bundle(ca: &CertificateAuthority) -> KeyCertBundle {
        let issued = ca.issue(&LeafRequest::for_names(["spiffe://cluster.local/ns/foo/sa/sleep"])).expect("leaf");
        KeyCertBundle {
            cert_chain_pem: issued.cert_chain_pem.into_bytes(),
            key_pem: issued.key_pem.into_bytes(),
            root_cert_pem: ca.root_pem().as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn serves_consistent_files_and_follows_their_rotation() {
        let ca = CertificateAuthority::self_signed("files source CA").expect("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = CertDir::new(dir.path().join("certs"));
        let mut secrets = follow(certs.dir().to_path_buf(), Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(secrets.borrow().is_none(), "nothing is served before the files exist");

        let first = bundle(&ca);
        certs.write(&first).expect("write");
        let served = secrets.wait_for(Option::is_some).await.expect("served").clone().expect("secrets");
        assert_eq!((served.bundle.clone(), served.version), (first.clone(), 1));

        // A new certificate with the old key is not served; the matching key completes it.
        let second = bundle(&ca);
        certs.write(&KeyCertBundle { key_pem: first.key_pem.clone(), ..second.clone() }).expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(secrets.borrow().as_ref().map(|served| served.version), Some(1));
        certs.write(&second).expect("write");
        let served = secrets
            .wait_for(|served| served.as_ref().is_some_and(|served| served.version == 2))
            .await
            .expect("rotated")
            .clone()
            .expect("secrets");
        assert_eq!(served.bundle, second);
    }
}
