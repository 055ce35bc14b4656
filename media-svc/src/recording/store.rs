//! The object store recordings are uploaded to (`MEDIA_RECORDING_STORE`): a local folder (a
//! plain path or `file://`), or an S3-compatible bucket (`s3://bucket`, with the endpoint,
//! region and credentials settings). Objects are `recordings/<customer_id>/<recording_id>`;
//! nothing is ever public: the store is only reached by media-svc with its own credentials.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh::domain::CustomerId;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

/// An S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (`None`: AWS itself). `http://` only on a loopback address.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id (`None`: the environment's credentials, e.g. an instance role).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<SecretString>,
}

/// Where recordings are stored.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A local folder.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

impl StoreConfig {
    /// Parses `MEDIA_RECORDING_STORE`: `s3://bucket` (S3 settings added by the caller),
    /// `file:///path` or a plain path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(bucket) = text.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err("expected `s3://<bucket>`".into());
            }
            return Ok(Self::S3(S3Config {
                bucket: bucket.to_owned(),
                endpoint: None,
                region: "us-east-1".into(),
                access_key_id: None,
                secret_access_key: None,
            }));
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            return Err("expected a folder, `file:///<folder>` or `s3://<bucket>`".into());
        }
        if text.contains("://") && !text.starts_with("file://") {
            return Err("only `file://` and `s3://` stores are supported".into());
        }
        Ok(Self::Local(PathBuf::from(path)))
    }
}

/// Whether `endpoint` is plain HTTP on a loopback host (the only place HTTP is allowed).
pub fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The object of a recording.
pub fn object_path(customer: CustomerId, id: Uuid) -> Path {
    Path::from(format!("recordings/{}/{id}", customer.get()))
}

/// Builds the store (creating a local folder when missing).
pub fn build(config: &StoreConfig) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match config {
        StoreConfig::Local(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok(Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir)?,
            ))
        }
        StoreConfig::S3(s3) => {
            // Few quick retries: the uploader has its own backoff, and a reader should hear
            // "unavailable" in seconds, not after the crate's default three minutes.
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            };
            let options = ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120));
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_retry(retry)
                .with_client_options(options);
            if let Some(endpoint) = &s3.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(is_loopback_http(endpoint))
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(id) = &s3.access_key_id {
                b = b.with_access_key_id(id);
            }
            if let Some(secret) = &s3.secret_access_key {
                b = b.with_secret_access_key(secret.expose_secret());
            }
            Ok(Arc::new(b.build()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_and_loopback_http() {
        assert!(matches!(StoreConfig::parse("s3://b"), Ok(StoreConfig::S3(s)) if s.bucket == "b"));
        assert!(
            matches!(StoreConfig::parse("file:///tmp/x"), Ok(StoreConfig::Local(p)) if p.as_path() == std::path::Path::new("/tmp/x"))
        );
        assert!(
            matches!(StoreConfig::parse("rec"), Ok(StoreConfig::Local(p)) if p.as_path() == std::path::Path::new("rec"))
        );
        assert!(StoreConfig::parse("gs://b").is_err());
        assert!(StoreConfig::parse("s3://").is_err());
        assert!(is_loopback_http("http://127.0.0.1:5000"));
        assert!(is_loopback_http("http://[::1]:5000/"));
        assert!(is_loopback_http("http://localhost:9000"));
        assert!(!is_loopback_http("http://10.0.0.1:9000"));
        assert!(!is_loopback_http("https://127.0.0.1"));
    }
}
