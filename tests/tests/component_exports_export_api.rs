//! exports/export-api under wasmtime (made by `just new-worker`).

use usher_engine::{HttpRequest, Input, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn health_answers_ok() {
    let host = TestHost::builder()
        .worker(
            &components::EXPORTS_EXPORT_API,
            "trigger: { http: { route: /exports/export-api } }",
        )
        .build()
        .expect("test host");
    let request = HttpRequest {
        method: "GET".into(),
        path: "/health".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    };
    let out = host
        .invoke("exports/export-api", Input::Http(request))
        .await
        .expect("invocation");
    match out.output {
        Output::Http(r) => assert_eq!((r.status, r.body), (200, br#"{"ok":true}"#.to_vec())),
        other => panic!("{other:?}"),
    }
}
