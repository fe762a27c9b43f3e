//! `services/user-service` (http-worker): serves HTTP below /services/user-service.
//!
//! Made by `just new-worker`: replace the logic, keep it callable natively
//! (the capability calls reach `usher_sdk::fakes` in the unit tests).

use usher_sdk::json::json;
use usher_sdk::router::Router;
use usher_sdk::{HttpRequest, HttpResponse, HttpWorker};

/// Serves one request (paths below the worker's route).
pub fn handle(request: &HttpRequest) -> HttpResponse {
    Router::new()
        .get("/health", |_| {
            Ok(HttpResponse::json_ok(&json!({"ok": true})))
        })
        .get("/hello/{name}", |r| {
            Ok(HttpResponse::json_ok(&json!({"hello": r.param("name")})))
        })
        .handle(request)
}

/// The worker.
pub struct UserService;

impl HttpWorker for UserService {
    fn handle(request: HttpRequest) -> HttpResponse {
        handle(&request)
    }
}

usher_sdk::export_http_worker!(UserService);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::Fakes;

    fn get(path: &str) -> HttpResponse {
        handle(&HttpRequest {
            method: "GET".into(),
            path: path.into(),
            ..HttpRequest::default()
        })
    }

    #[test]
    fn routes() {
        let fakes = Fakes::new();
        let _installed = fakes.install();
        assert_eq!(get("/hello/ada").body, br#"{"hello":"ada"}"#);
        assert_eq!(get("/health").status, 200);
        assert_eq!(get("/nope").status, 404);
        assert!(fakes.calls().is_empty());
    }
}
