//! `goim cluster certs`: a cluster CA and one certificate per node, signed by it (rcgen,
//! ECDSA P-256). Every node certificate carries the DNS name [`SERVER_NAME`] (peers are
//! dialled by IP; clients verify the chain against the CA and that name) and may serve as
//! both TLS server and client.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::tls::SERVER_NAME;
use super::QuicError;

const DAY: Duration = Duration::from_secs(86_400);

fn tls_err(e: impl std::fmt::Display) -> QuicError {
    QuicError::Tls(e.to_string())
}

/// Certificate validity: from a day ago (clock skew) until `days` from now.
fn validity(params: &mut CertificateParams, days: u32) -> Result<(), QuicError> {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).map_err(tls_err)?;
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - DAY;
    params.not_after = now + DAY * days;
    Ok(())
}

/// A node name usable as a file name: letters, digits, `-`, `_`, `.` (not leading).
fn check_name(name: &str) -> Result<(), QuicError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && name != "ca" {
        Ok(())
    } else {
        Err(QuicError::Tls(format!("bad node name {name:?} (letters, digits, - _ . ; not \"ca\")")))
    }
}

/// Writes `ca.pem`, `ca.key` and `<node>.pem` / `<node>.key` for every node into `out`
/// (created if missing), certificates valid for `days`. Returns the files written.
pub fn write_cluster_certs(out: &Path, nodes: &[String], days: u32) -> Result<Vec<PathBuf>, QuicError> {
    if nodes.is_empty() {
        return Err(QuicError::Tls("no node names given".into()));
    }
    if days == 0 {
        return Err(QuicError::Tls("--days must be at least 1".into()));
    }
    for n in nodes {
        check_name(n)?;
    }
    std::fs::create_dir_all(out)?;

    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "goim cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params, days)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;

    let mut written = Vec::new();
    let mut write = |name: String, text: String, secret: bool| -> Result<(), QuicError> {
        let path = out.join(name);
        write_file(&path, text.as_bytes(), secret)?;
        written.push(path);
        Ok(())
    };
    write("ca.pem".into(), ca_cert.pem(), false)?;
    write("ca.key".into(), ca_key.serialize_pem(), true)?;

    let issuer = Issuer::new(ca_params, ca_key);
    for node in nodes {
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(tls_err)?;
        params.distinguished_name.push(DnType::CommonName, node.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days)?;
        let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
        write(format!("{node}.pem"), cert.pem(), false)?;
        write(format!("{node}.key"), key.serialize_pem(), true)?;
    }
    Ok(written)
}

/// Writes a file; private keys are readable by their owner only (Unix).
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), QuicError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    use std::io::Write;
    let mut f = options.open(path).map_err(|e| QuicError::Tls(format!("writing {}: {e}", path.display())))?;
    f.write_all(bytes).map_err(|e| QuicError::Tls(format!("writing {}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::ClusterTls;

    #[test]
    fn generated_certs_load_and_chain_to_their_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        write_cluster_certs(dir.path(), &["n1".into(), "n2".into()], 30).expect("certs");
        write_cluster_certs(other.path(), &["n1".into()], 30).expect("foreign certs");
        let d = dir.path();
        let tls = ClusterTls::from_pem_files(&d.join("ca.pem"), &d.join("n1.pem"), &d.join("n1.key"));
        assert!(tls.expect("loads").is_mutual());
        assert!(ClusterTls::from_pem_files(&d.join("ca.pem"), &d.join("n2.pem"), &d.join("n2.key")).is_ok());
        // Another node's key with this node's certificate: both files are named.
        let e = ClusterTls::from_pem_files(&d.join("ca.pem"), &d.join("n1.pem"), &d.join("n2.key"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("n1.pem: not the certificate of the key in") && e.contains("n2.key"), "{e}");
        // A certificate of another cluster's CA is refused at load.
        let o = other.path();
        assert!(ClusterTls::from_pem_files(&d.join("ca.pem"), &o.join("n1.pem"), &o.join("n1.key")).is_err());
        assert!(write_cluster_certs(d, &["../x".into()], 30).is_err());
        assert!(write_cluster_certs(d, &["ca".into()], 30).is_err());
    }
}
