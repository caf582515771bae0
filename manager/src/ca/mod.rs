//! The cluster CA: the root certificate made at `swarm init`, node
//! certificates (CN = node ID, OU = role, O = cluster ID), join tokens that
//! pin the root by its digest, and reading a peer's identity back from its
//! certificate.
//!
//! - [`tls`]: rustls/tonic configurations for servers, clients and the
//!   join bootstrap (which pins the CA by digest before it has any cert);
//! - [`server`]: the `NodeCA` service that issues certificates to joiners.

pub mod server;
pub mod tls;

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use shoal_proto::NodeRole;

/// OU of manager and worker certificates (swarmkit's names).
pub const MANAGER_OU: &str = "swarm-manager";
pub const WORKER_OU: &str = "swarm-worker";
/// The name every manager certificate carries and clients verify.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";
/// How long node certificates live unless the cluster says otherwise
/// (swarmkit's default: 90 days).
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid certificate or request: {0}")]
    Invalid(String),
    #[error("invalid join token: {0}")]
    Token(String),
}

/// A node's TLS material: its certificate and key, and the cluster root.
#[derive(Debug, Clone)]
pub struct NodeTls {
    pub root_ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's root CA (certificate and key): managers hold it.
#[derive(Clone)]
pub struct RootCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa").field("digest", &self.digest()).finish_non_exhaustive()
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl RootCa {
    /// A new root: ECDSA P-256, CN `swarm-ca`, valid 20 years.
    pub fn generate() -> Result<RootCa, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "swarm-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = now() - time::Duration::minutes(5);
        params.not_after = now() + time::Duration::days(20 * 365);
        let cert = params.self_signed(&key)?;
        Ok(RootCa { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// The digest joiners pin: sha256 of the root's DER, in base36.
    pub fn digest(&self) -> String {
        cert_digest(&self.cert_pem).unwrap_or_default()
    }

    /// Signs a node certificate for the key in `csr_pem`. The subject comes
    /// from the arguments, never from the request.
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        lifetime: Duration,
    ) -> Result<String, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::Invalid(format!("the certificate signing request is not valid: {e}")))?;
        let ou = match role {
            NodeRole::Manager => MANAGER_OU,
            NodeRole::Worker => WORKER_OU,
        };
        let mut params = CertificateParams::new(vec![ou.to_string(), node_id.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.distinguished_name.push(DnType::OrganizationalUnitName, ou);
        params.distinguished_name.push(DnType::OrganizationName, cluster_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        // Backdated for clock skew between hosts, by at most a tenth of the
        // lifetime so that renewal (at 50–80%) stays in the future.
        let backdate = time::Duration::try_from((lifetime / 10).min(Duration::from_secs(300)))
            .unwrap_or(time::Duration::minutes(5));
        params.not_before = now() - backdate;
        params.not_after = now() + time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(90));
        let key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        let csr = CertificateSigningRequestParams { params, public_key: csr.public_key };
        Ok(csr.signed_by(&issuer)?.pem())
    }

    /// A certificate for this manager itself (no request needed).
    pub fn issue_own(
        &self,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        lifetime: Duration,
    ) -> Result<NodeTls, CaError> {
        let (key_pem, csr_pem) = new_key_and_csr()?;
        let cert_pem = self.issue(&csr_pem, node_id, role, cluster_id, lifetime)?;
        Ok(NodeTls { root_ca_pem: self.cert_pem.clone(), cert_pem, key_pem })
    }
}

/// A new node key and a signing request for it (PEM, PEM).
pub fn new_key_and_csr() -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let params = CertificateParams::new(Vec::<String>::new())?;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

fn der_of(pem: &str) -> Option<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(p.contents)
}

/// A certificate's validity period (not before, not after).
pub fn validity(pem: &str) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let der = der_of(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        std::time::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(t.timestamp()).ok()?))
    };
    Some((at(cert.validity().not_before)?, at(cert.validity().not_after)?))
}

/// When to renew a certificate valid from `not_before` to `not_after`: at
/// `fraction` (drawn from 0.5–0.8 by the caller) of its lifetime.
pub fn renewal_time(
    not_before: std::time::SystemTime,
    not_after: std::time::SystemTime,
    fraction: f64,
) -> std::time::SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime.mul_f64(fraction.clamp(0.0, 1.0))
}

/// The base36 sha256 of a certificate's DER.
pub fn cert_digest(pem: &str) -> Option<String> {
    Some(der_digest(&der_of(pem)?))
}

/// The base36 sha256 of DER bytes (50 characters).
pub fn der_digest(der: &[u8]) -> String {
    base36(&Sha256::digest(der))
}

fn base36(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = bytes.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | *b as u32;
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    // 36^50 > 2^256: pad to a fixed width.
    while digits.len() < 50 {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// `SWMTKN-1-<CA digest>-<secret>`.
pub fn make_token(ca_digest: &str, secret: &str) -> String {
    format!("SWMTKN-1-{ca_digest}-{secret}")
}

/// Splits a join token into (CA digest, secret).
pub fn parse_token(token: &str) -> Result<(String, String), CaError> {
    let rest = token
        .strip_prefix("SWMTKN-1-")
        .ok_or_else(|| CaError::Token("it must start with SWMTKN-1-: copy it from `shoal swarm join-token`".into()))?;
    let (digest, secret) = rest.split_once('-').ok_or_else(|| {
        CaError::Token("it has no secret part: copy the whole token from `shoal swarm join-token`".into())
    })?;
    if digest.len() != 50 || secret.is_empty() {
        return Err(CaError::Token("it is truncated or malformed: copy it again from `shoal swarm join-token`".into()));
    }
    Ok((digest.to_string(), secret.to_string()))
}

/// Who a peer is, read from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: String,
    pub role: NodeRole,
    pub cluster_id: String,
}

/// Reads CN, OU and O from a DER certificate.
pub fn peer_identity(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(String::from)
    };
    let node_id = first(&mut subject.iter_common_name())?;
    let ou = first(&mut subject.iter_organizational_unit())?;
    let cluster_id = first(&mut subject.iter_organization())?;
    let role = match ou.as_str() {
        MANAGER_OU => NodeRole::Manager,
        WORKER_OU => NodeRole::Worker,
        _ => return None,
    };
    Some(PeerIdentity { node_id, role, cluster_id })
}

/// The identity of the caller of an RPC, from its client certificate.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<PeerIdentity> {
    let certs = request.peer_certs()?;
    peer_identity(certs.first()?.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_identity_and_tokens_round_trip() {
        let ca = RootCa::generate().unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let cert = ca.issue(&csr, "node1", NodeRole::Worker, "cluster1", Duration::from_secs(3600)).unwrap();
        let id = peer_identity(&der_of(&cert).unwrap()).unwrap();
        assert_eq!(id, PeerIdentity { node_id: "node1".into(), role: NodeRole::Worker, cluster_id: "cluster1".into() });
        let digest = ca.digest();
        assert_eq!(digest.len(), 50);
        let token = make_token(&digest, "secret");
        assert_eq!(parse_token(&token).unwrap(), (digest, "secret".to_string()));
        assert!(parse_token("SWMTKN-1-short-x").is_err());
        assert!(parse_token("nope").is_err());
        assert!(ca.issue("not a csr", "n", NodeRole::Worker, "c", Duration::from_secs(60)).is_err());
    }

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_lifetime() {
        let ca = RootCa::generate().unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let cert = ca.issue(&csr, "n", NodeRole::Worker, "c", Duration::from_secs(3600)).unwrap();
        let (from, to) = validity(&cert).unwrap();
        // Issued certificates start 5 minutes early (clock skew).
        assert_eq!(to.duration_since(from).unwrap(), Duration::from_secs(3600 + 300));
        let half = renewal_time(from, to, 0.5);
        assert_eq!(half.duration_since(from).unwrap(), Duration::from_secs(1950));
        assert!(renewal_time(from, to, 0.8) < to);
        assert!(validity("not a certificate").is_none());
    }

    #[test]
    fn base36_is_fixed_width() {
        assert_eq!(base36(&[0u8; 32]).len(), 50);
        assert_eq!(base36(&[0xff; 32]).len(), 50);
        assert!(base36(&[1]).ends_with('1'));
    }
}
