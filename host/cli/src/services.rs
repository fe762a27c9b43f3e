//! The `services` capability of the CLI: real HTTP to the registry's
//! services, and the rule that points the services `usher up` serves itself
//! at its listener.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Result;
use usher_capabilities::ServiceBackend;
use usher_registry::{Registry, ServiceDef, Trigger};

/// The secret used to sign app-to-app tokens on a developer machine when
/// `USHER_JWT_SECRET` is not set.
const DEV_JWT_SECRET: &str = "usher-local-development-secret";

/// The routes of the services the registry's http-workers serve: service
/// NAME is served by the http-worker whose route is `/services/NAME`.
pub const SERVICE_ROUTES: &str = "/services/";

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

/// Points every service of the registry that one of its http-workers
/// serves (service NAME, the worker whose route is `/services/NAME`) at
/// that route on `listener` (an unspecified address becomes the loopback
/// one); returns each such service and its worker. The registry's `url`
/// is replaced; a `USHER_SERVICE_<NAME>_URL` still wins over it (see
/// [`ServiceDef::effective_url`]), so the calls can go to a real service
/// or a proxy instead.
pub fn point_at_listener(
    registry: &mut Registry,
    listener: SocketAddr,
) -> BTreeMap<String, String> {
    let listener = reachable(listener);
    let served: BTreeMap<String, String> = registry
        .workers
        .iter()
        .filter_map(|(worker, spec)| match &spec.trigger {
            Trigger::Http { route } => route
                .strip_prefix(SERVICE_ROUTES)
                .filter(|name| registry.resources.has_service(name))
                .map(|name| (name.to_string(), worker.clone())),
            _ => None,
        })
        .collect();
    for name in served.keys() {
        if let Some(def) = registry.resources.services.get_mut(name) {
            def.url = format!("http://{listener}{SERVICE_ROUTES}{name}");
        }
    }
    served
}

/// One line per service of the registry: where its calls go and why (the
/// variable that overrides it, the worker serving it here, or the registry).
pub fn describe(registry: &Registry, served: &BTreeMap<String, String>) -> Vec<String> {
    describe_with(registry, served, |var| std::env::var(var).ok())
}

fn describe_with(
    registry: &Registry,
    served: &BTreeMap<String, String>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    registry
        .resources
        .services
        .iter()
        .map(|(name, def)| {
            let url = def.effective_url_with(name, &lookup);
            let why = if url != def.url {
                format!("{} is set", ServiceDef::url_env_var(name))
            } else if let Some(worker) = served.get(name) {
                format!("served here by {worker}")
            } else {
                "the registry's".to_string()
            };
            format!("service {name} -> {url} ({why})")
        })
        .collect()
}

/// The address to call a listener bound to `addr` at.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "version: 0.1.0, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"";

    /// Two services served by http-workers (entries, campaigns), one
    /// served by nobody (users), one http-worker that is no service's.
    fn registry() -> Registry {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("resources.yaml"),
            "tables: { entries: { partition_key: PK, sort_key: SK } }\nservices:\n  entries: { url: \"http://127.0.0.1:8090/services/entries\" }\n  campaigns: { url: \"https://campaigns.example.com\" }\n  users: { url: \"https://users.example.com\" }\n",
        )
        .expect("resources");
        let worker = |key: &str, route: &str| {
            format!("  {key}:\n    component: {{ name: services/{key}, {PIN} }}\n    trigger: {{ http: {{ route: {route} }} }}\n    grants: {{ tables: [entries] }}\n")
        };
        std::fs::write(
            dir.path().join("services.yaml"),
            format!(
                "domain: services\nworkers:\n{}{}{}",
                worker("entry-service", "/services/entries"),
                worker("campaign-service", "/services/campaigns"),
                worker("export-api", "/exports"),
            ),
        )
        .expect("services");
        Registry::load(dir.path()).expect("registry")
    }

    fn url(registry: &Registry, name: &str) -> String {
        registry.resources.services[name].url.clone()
    }

    #[test]
    fn every_service_an_http_worker_serves_points_at_the_listener() {
        let mut registry = registry();
        let served = point_at_listener(&mut registry, "127.0.0.1:41234".parse().expect("addr"));
        assert_eq!(
            served,
            BTreeMap::from([
                (
                    "campaigns".to_string(),
                    "services/campaign-service".to_string()
                ),
                ("entries".to_string(), "services/entry-service".to_string()),
            ])
        );
        assert_eq!(
            url(&registry, "entries"),
            "http://127.0.0.1:41234/services/entries"
        );
        assert_eq!(
            url(&registry, "campaigns"),
            "http://127.0.0.1:41234/services/campaigns"
        );
        // Served by nobody here: the registry's URL stays.
        assert_eq!(url(&registry, "users"), "https://users.example.com");
    }

    #[test]
    fn an_unspecified_listener_is_called_on_loopback() {
        let mut registry = registry();
        point_at_listener(&mut registry, "0.0.0.0:8091".parse().expect("addr"));
        assert_eq!(
            url(&registry, "entries"),
            "http://127.0.0.1:8091/services/entries"
        );
        let mut registry = self::registry();
        point_at_listener(&mut registry, "[::]:8091".parse().expect("addr"));
        assert_eq!(
            url(&registry, "campaigns"),
            "http://[::1]:8091/services/campaigns"
        );
    }

    #[test]
    fn an_externally_configured_url_still_wins() {
        let mut registry = registry();
        let served = point_at_listener(&mut registry, "127.0.0.1:41234".parse().expect("addr"));
        let env = |var: &str| {
            (var == "USHER_SERVICE_CAMPAIGNS_URL")
                .then(|| "https://campaigns.prod.example.com".to_string())
        };
        let def = &registry.resources.services["campaigns"];
        assert_eq!(
            def.effective_url_with("campaigns", env),
            "https://campaigns.prod.example.com"
        );
        assert_eq!(
            describe_with(&registry, &served, env),
            [
                "service campaigns -> https://campaigns.prod.example.com (USHER_SERVICE_CAMPAIGNS_URL is set)",
                "service entries -> http://127.0.0.1:41234/services/entries (served here by services/entry-service)",
                "service users -> https://users.example.com (the registry's)",
            ]
        );
    }
}
