//! Every capability call is a span: bindgen's `wit-bindgen import` span, the
//! capability layer's `capability` span with the resource, both under the
//! engine's `invocation` span with the worker, its version and the
//! correlation id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use usher_engine::Input;
use usher_testing::{components, TestHost};

type Fields = BTreeMap<String, String>;

#[derive(Default)]
struct Visitor(Fields);

impl Visit for Visitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// A span as it was opened: its name, its fields, and its ancestors'
/// (innermost first).
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    fields: Fields,
    ancestors: Vec<(String, Fields)>,
}

/// Keeps every span opened.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = Visitor::default();
        attrs.record(&mut visitor);
        let Some(span) = ctx.span(id) else { return };
        let ancestors = span
            .scope()
            .skip(1)
            .map(|s| {
                let fields = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                (s.name().to_string(), fields)
            })
            .collect();
        span.extensions_mut().insert(visitor.0.clone());
        self.0.lock().expect("spans").push(Seen {
            name: span.name().to_string(),
            fields: visitor.0,
            ancestors,
        });
    }
}

#[tokio::test]
async fn a_capability_call_is_a_span_with_worker_version_and_resource() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let host = TestHost::builder()
        .resources("tables: { mine: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::TESTING_TABLE_PROBE,
            "trigger: { invoke: {} }\ngrants: { tables: [mine] }",
        )
        .build()
        .expect("test host");
    let out = host
        .invoke(
            "testing/table-probe",
            Input::Invoke(json!({"op": "get", "table": "mine", "key": {"PK": "a", "SK": "b"}})),
        )
        .await
        .expect("invocation");

    let seen = spans.0.lock().expect("spans").clone();
    let call = seen
        .iter()
        .find(|s| {
            s.name == "capability"
                && s.fields.get("capability").map(String::as_str) == Some("table")
                && s.fields.get("function").map(String::as_str) == Some("get")
        })
        .unwrap_or_else(|| panic!("no capability span for table.get among {seen:#?}"));
    assert_eq!(call.fields["resource"], "mine");

    let ancestor = |name: &str| {
        call.ancestors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no `{name}` span above the call: {call:#?}"))
    };
    let invocation = ancestor("invocation");
    assert_eq!(invocation["worker"], "testing/table-probe");
    assert_eq!(invocation["version"], out.version.to_string());
    assert_eq!(invocation["correlation_id"], out.correlation_id);
    // bindgen's own span of the import (its `tracing` option).
    let import = ancestor("wit-bindgen import");
    assert_eq!(import["module"], "table");
    assert_eq!(import["function"], "get");
}
