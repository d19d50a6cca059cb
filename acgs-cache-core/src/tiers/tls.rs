//! TLS (`rediss://`) through rustls, with the system's roots or a private CA.

/// rustls needs a process-wide crypto provider; ring is the one built in.
/// Installing fails harmlessly when the application installed one first.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `url`'s connection info, trusting the PEM certificate(s) in `pem`.
pub(crate) fn with_root_certificate(
    url: &str,
    pem: &[u8],
) -> redis::RedisResult<redis::ConnectionInfo> {
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    };
    Ok(redis::Client::build_with_tls(url, certificates)?
        .get_connection_info()
        .clone())
}
