//! The `services` capability of the CLI: real HTTP to the registry's services.

use std::sync::Arc;

use anyhow::Result;
use usher_capabilities::ServiceBackend;
use usher_registry::Registry;

/// The secret used to sign app-to-app tokens on a developer machine when
/// `USHER_JWT_SECRET` is not set.
const DEV_JWT_SECRET: &str = "usher-local-development-secret";

/// HTTP services for the registry's `services` (URLs overridable with
/// `USHER_SERVICE_<NAME>_URL`; tokens signed with `USHER_JWT_SECRET`).
pub fn http_services(registry: &Registry) -> Result<Arc<dyn ServiceBackend>> {
    let secret = std::env::var("USHER_JWT_SECRET").unwrap_or_else(|_| {
        tracing::info!(
            "USHER_JWT_SECRET is not set: signing service tokens with the local development secret"
        );
        DEV_JWT_SECRET.to_string()
    });
    let config = usher_backend_http::JwtConfig::new("usher", secret.into_bytes());
    Ok(Arc::new(usher_backend_http::HttpServices::new(
        registry.resources.services.clone(),
        config,
    )?))
}
