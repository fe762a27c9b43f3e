//! The `services` capability of the CLI: real HTTP to the registry's services.

use std::sync::Arc;

use anyhow::Result;
use usher_capabilities::ServiceBackend;
use usher_registry::Registry;

/// HTTP services for the registry's `services` (URLs overridable with
/// `USHER_SERVICE_<NAME>_URL`; the JWT secret from `USHER_JWT_SECRET`).
pub fn http_services(registry: &Registry) -> Result<Arc<dyn ServiceBackend>> {
    let config = usher_backend_http::JwtConfig::from_env();
    Ok(Arc::new(usher_backend_http::HttpServices::new(&registry.resources.services, config)?))
}
