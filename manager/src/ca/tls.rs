//! TLS for every connection to a manager: servers present their node
//! certificate and ask for the client's (optional at the TLS level, so that
//! joiners without one can reach the CA; each RPC then checks the caller's
//! role); clients present theirs and verify the manager against the root.
//! A joiner, which has only the token, pins the root by its digest.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{der_digest, NodeTls, MANAGER_SERVER_NAME};

/// The server side: this node's certificate (with the root in its chain, so
/// joiners can pin it) and the root to verify client certificates with.
/// A client certificate is optional at the TLS level (a joiner has none);
/// every RPC checks its caller's. HTTP/2 only.
pub fn server_config(tls: &NodeTls) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("this manager's {what} is unusable: {e}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.root_ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad("CA certificate", &e))?).map_err(|e| bad("CA certificate", &e))?;
    }
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("CA certificate", &e))?;
    let chain = format!("{}\n{}", tls.cert_pem.trim_end(), tls.root_ca_pem);
    let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| bad("key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The client side of a node that has its certificate.
pub fn client_config(tls: &NodeTls) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.root_ca_pem))
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .domain_name(MANAGER_SERVER_NAME)
}

/// An mTLS channel to a manager (`host:port`), connected (TCP, TLS and
/// HTTP/2) within `timeout`.
pub async fn connect(addr: &str, tls: &NodeTls, timeout: Duration) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| format!("bad manager address {addr}: {e}"))?
        .tls_config(client_config(tls))
        .map_err(|e| format!("TLS configuration: {e}"))?
        .connect_timeout(timeout)
        .tcp_keepalive(Some(Duration::from_secs(10)));
    tokio::time::timeout(timeout, endpoint.connect())
        .await
        .map_err(|_| format!("no answer from manager {addr} within {}s", timeout.as_secs()))?
        .map_err(|e| format!("cannot reach manager {addr}: {e}"))
}

/// The sending side of a raft connection (see [`raft_connection`]).
pub type RaftSender = hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// A direct HTTP/2 connection over mutual TLS to a manager (`host:port`),
/// for raft's messages: a call goes straight to hyper's connection, where a
/// tonic channel first queues it for a task of its own (one more thread
/// hand-off on every call, and a write makes several).
/// The connection's own task is tracked by `tasks`; it ends when the sender
/// is dropped or the connection fails.
pub async fn raft_connection(
    addr: &str,
    tls: &NodeTls,
    timeout: Duration,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<RaftSender, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("this node's {what} is unusable: {e}");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.root_ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad("CA certificate", &e))?).map_err(|e| bad("CA certificate", &e))?;
    }
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| bad("key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("certificate", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(MANAGER_SERVER_NAME).map_err(std::io::Error::other)?;
        connector.connect(name, tcp).await
    };
    let connect = async {
        let stream = connect.await.map_err(|e| format!("cannot reach manager {addr}: {e}"))?;
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .map_err(|e| format!("HTTP/2 with manager {addr}: {e}"))
    };
    let (sender, connection) = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| format!("no answer from manager {addr} within {}s", timeout.as_secs()))??;
    tasks.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "raft connection closed");
        }
    });
    Ok(sender)
}

/// Accepts a manager whose chain contains a root with the pinned digest and
/// whose certificate that root signed for `swarm-manager`.
#[derive(Debug)]
struct PinnedRoot {
    digest: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedRoot {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(root) = intermediates.iter().find(|c| der_digest(c.as_ref()) == self.digest) else {
            return Err(rustls::Error::General(
                "the manager's CA does not match the digest in the join token: the token belongs to another swarm, or something is in the way".into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone().into_owned()).map_err(|e| rustls::Error::General(format!("the pinned CA: {e}")))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("the pinned CA: {e}")))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A channel for joining: TLS that trusts only a manager whose CA has
/// `ca_digest` (from the join token). No client certificate.
pub async fn join_channel(addr: &str, ca_digest: &str, timeout: Duration) -> Result<Channel, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedRoot { digest: ca_digest.to_string(), provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let target = addr.to_string();
    let service = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        let target = target.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&target).await?;
            let name = ServerName::try_from(MANAGER_SERVER_NAME).map_err(std::io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad manager address {addr}: {e}"))?
        .connect_timeout(timeout);
    tokio::time::timeout(timeout, endpoint.connect_with_connector(service))
        .await
        .map_err(|_| format!("no answer from manager {addr} within {}s", timeout.as_secs()))?
        .map_err(|e| format!("cannot reach manager {addr} securely: {}", source_chain(&e)))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
