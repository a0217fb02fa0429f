//! TLS towards the upstream is verified with rustls (ring provider): a server whose
//! certificate chains to the configured `ca_file` is accepted, the same server is refused
//! without it, and a certificate for another name is refused even with the right CA.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::upstream::{ClientSettings, RequestError, UpstreamClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::upstream_double::UpstreamDouble;

/// A test CA and a server configuration with a certificate for `name` signed by it.
fn ca_and_server(name: &str) -> (String, rustls::ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone(), ca.der().clone()], key)
        .unwrap();
    (ca.pem(), config)
}

fn client(url: &str, dir: &std::path::Path, ca_file: Option<PathBuf>) -> UpstreamClient {
    UpstreamClient::new(&ClientSettings {
        url: url.into(),
        token_file: token_file(dir, TOKEN),
        ca_file,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_is_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, server) = ca_and_server("localhost");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let double = UpstreamDouble::start_tls(TOKEN, server).await;
    double.add_person(json!({"person_id": "p1", "name": "Ana", "privilege": 0, "card": null}));

    let trusting = client(&double.url(), dir.path(), Some(ca_file));
    let person = trusting
        .person("p1")
        .await
        .expect("TLS with the configured CA");
    assert_eq!(person.unwrap().name, "Ana");

    let default_roots = client(&double.url(), dir.path(), None);
    let error = default_roots.person("p1").await.unwrap_err();
    assert!(
        matches!(&error, RequestError::Retryable { reason, .. } if reason.contains("certificate")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, server) = ca_and_server("backend.example.com");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let double = UpstreamDouble::start_tls(TOKEN, server).await;

    let error = client(&double.url(), dir.path(), Some(ca_file))
        .person("p1")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RequestError::Retryable { reason, .. } if reason.contains("certificate")),
        "{error}"
    );
}
